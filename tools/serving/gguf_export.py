"""GGUF from a merged Hugging Face Llama folder, following llama.cpp's convert_hf_to_gguf.py.

What the converter does for `LlamaForCausalLM`, and so this module:
- metadata: general.* (type, name, size label, file type, quantisation version) and llama.* from
  config.json (context/embedding/feed-forward length, block count, head counts, rope base and
  dimension, rms eps, vocab size; key/value length only when head_dim is not hidden/heads);
- tensors renamed through gguf's tensor map; q_proj and k_proj rows permuted from Hugging Face's
  rotary layout (halves) back to Meta's (interleaved pairs), k_proj with the key/value head count;
- dtype: 1-D tensors (norms) stay F32; f16 makes matrices F16; q8_0 makes them Q8_0 where the row
  length is a multiple of 32 and F16 where it is not (the converter's fallback);
- tokenizer: "gpt2" (byte-level BPE) with tokens, token types (control for special added tokens,
  user-defined for other added tokens, unused for padding rows), merges, special ids, add_bos_token
  and the chat template, via gguf.SpecialVocab as the converter uses it.
Other architectures get an ExportError naming them.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tools.serving.export import (
    GGUF_DTYPES,
    ExportError,
    check_export,
    check_file_target,
    read_tensor_headers,
)

GGUF_MAGIC = b"GGUF"  # the first four bytes of every GGUF file: only such a file is ever replaced

SUPPORTED_ARCHITECTURES = ("LlamaForCausalLM",)


@dataclass(frozen=True)
class LlamaShape:
    """The hyperparameters llama.cpp reads, from a Hugging Face config.json."""

    layers: int
    hidden: int
    feed_forward: int
    heads: int
    kv_heads: int
    head_dim: int
    context: int
    rope_theta: float
    rope_scaling: tuple[str, float] | None  # ("linear", factor) or None
    rms_eps: float
    vocab_size: int

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> LlamaShape:
        heads = config["num_attention_heads"]
        rope = config.get("rope_parameters") or config.get("rope_scaling") or {}
        rope_type = rope.get("rope_type") or rope.get("type") or "default"
        if rope_type not in ("default", "linear"):
            raise ExportError(f"rope type {rope_type!r} is not supported by this GGUF writer (default and linear are)")
        return cls(
            layers=config["num_hidden_layers"], hidden=config["hidden_size"],
            feed_forward=config["intermediate_size"], heads=heads,
            kv_heads=config.get("num_key_value_heads") or heads,
            head_dim=config.get("head_dim") or config["hidden_size"] // heads,
            context=config["max_position_embeddings"],
            rope_theta=float(rope.get("rope_theta") or config.get("rope_theta") or 10000.0),
            rope_scaling=("linear", float(rope["factor"])) if rope_type == "linear" else None,
            rms_eps=float(config["rms_norm_eps"]), vocab_size=config["vocab_size"],
        )


def write_gguf(merged_dir: Path, out_file: Path, dtype: str = "f16") -> Path:
    """Write `merged_dir` (a checked merged folder, see tools.serving.export.export_problems) as one GGUF file at
    `out_file`, atomically. dtype: f16 (llama.cpp's default), f32 (exact), q8_0 (half of f16's size)."""
    import gguf

    if dtype not in GGUF_DTYPES:
        raise ExportError(f"dtype {dtype!r} cannot be written as GGUF; one of {', '.join(GGUF_DTYPES)}")
    check_export(merged_dir)
    config = json.loads((merged_dir / "config.json").read_text())
    architecture = config["architectures"][0]
    if architecture not in SUPPORTED_ARCHITECTURES:
        raise ExportError(f"GGUF export writes Llama-architecture models ({', '.join(SUPPORTED_ARCHITECTURES)}); "
                          f"{merged_dir} is {architecture}: export it as safetensors and convert it with "
                          "llama.cpp's convert_hf_to_gguf.py")
    try:
        shape = LlamaShape.from_config(config)
    except KeyError as missing:
        raise ExportError(f"config.json in {merged_dir} lacks {missing}, which llama.cpp needs") from None
    def fill(writer: Any) -> None:
        tensors = list(_gguf_tensors(merged_dir, shape, dtype))  # an unmappable name stops before any metadata
        _add_general(writer, merged_dir, dtype, _parameter_count(merged_dir))
        _add_hyperparameters(writer, shape)
        _add_tokenizer(writer, merged_dir, shape.vocab_size)
        for name, data, qtype in tensors:
            writer.add_tensor(name, data, raw_dtype=qtype if qtype == gguf.GGMLQuantizationType.Q8_0 else None)

    return write_gguf_file(out_file, gguf.MODEL_ARCH_NAMES[gguf.MODEL_ARCH.LLAMA], fill)


def write_gguf_file(out_file: Path, architecture: str, fill: Callable[[Any], None]) -> Path:
    """One GGUF file at `out_file`, written by `fill(writer)` (metadata and tensors) into a staging file next
    to it and renamed into place: a runtime never finds half a file, and only an earlier GGUF is replaced."""
    import gguf

    check_file_target(out_file, GGUF_MAGIC)
    out_file.parent.mkdir(parents=True, exist_ok=True)
    handle, staging_name = tempfile.mkstemp(prefix=f".{out_file.name}.", suffix=".partial", dir=out_file.parent)
    os.close(handle)
    staging = Path(staging_name)
    writer = gguf.GGUFWriter(str(staging), architecture)
    try:
        fill(writer)
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
        writer.close()
    except BaseException:
        writer.close()
        staging.unlink(missing_ok=True)  # no half-written file is left for a runtime to pick up
        raise
    try:
        check_file_target(out_file, GGUF_MAGIC)  # nothing else appeared there while we wrote
    except ExportError:
        staging.unlink(missing_ok=True)
        raise
    os.replace(staging, out_file)
    return out_file


def _parameter_count(merged_dir: Path) -> int:
    headers, _ = read_tensor_headers(merged_dir)
    return sum(math.prod(header.shape) for header in headers)


def _add_general(writer: Any, merged_dir: Path, dtype: str, parameters: int) -> None:
    import gguf

    file_types = {"f32": gguf.LlamaFileType.ALL_F32, "f16": gguf.LlamaFileType.MOSTLY_F16,
                  "q8_0": gguf.LlamaFileType.MOSTLY_Q8_0}
    writer.add_type(gguf.GGUFType.MODEL)
    writer.add_name(merged_dir.resolve().parent.name if merged_dir.name == "merged" else merged_dir.name)
    writer.add_size_label(gguf.size_label(parameters, 0, 0, 0))
    writer.add_file_type(file_types[dtype])
    writer.add_quantization_version(gguf.GGML_QUANT_VERSION)


def _add_hyperparameters(writer: Any, shape: LlamaShape) -> None:
    import gguf

    writer.add_context_length(shape.context)
    writer.add_embedding_length(shape.hidden)
    writer.add_block_count(shape.layers)
    writer.add_feed_forward_length(shape.feed_forward)
    writer.add_head_count(shape.heads)
    writer.add_head_count_kv(shape.kv_heads)
    writer.add_rope_freq_base(shape.rope_theta)
    writer.add_layer_norm_rms_eps(shape.rms_eps)
    writer.add_vocab_size(shape.vocab_size)
    writer.add_rope_dimension_count(shape.head_dim)
    if shape.head_dim != shape.hidden // shape.heads:  # llama.cpp assumes hidden/heads unless told
        writer.add_key_length(shape.head_dim)
        writer.add_value_length(shape.head_dim)
    if shape.rope_scaling:
        writer.add_rope_scaling_type(gguf.RopeScalingType.LINEAR)
        writer.add_rope_scaling_factor(shape.rope_scaling[1])


# -- tensors -------------------------------------------------------------------------------------

def permute_for_llama_cpp(weights: Any, heads: int) -> Any:
    """Hugging Face stores each head's rotary dimensions as two halves; llama.cpp (like Meta's original
    checkpoints) as interleaved pairs. The converter's LlamaModel.permute, for q with the attention head
    count and for k with the key/value head count."""
    return (weights.reshape(heads, 2, weights.shape[0] // heads // 2, *weights.shape[1:])
            .swapaxes(1, 2).reshape(weights.shape))


def _gguf_tensors(merged_dir: Path, shape: LlamaShape, dtype: str):
    """(GGUF name, array, GGML type) for every weight, in file order."""
    import gguf
    from safetensors import safe_open

    tensor_map = gguf.get_tensor_name_map(gguf.MODEL_ARCH.LLAMA, shape.layers)
    for file in sorted(merged_dir.glob("*.safetensors")):
        with safe_open(str(file), framework="pt") as handle:
            for name in handle.keys():  # noqa: SIM118 - safe_open is not iterable
                if name.endswith("rotary_emb.inv_freq"):
                    continue  # recomputed by llama.cpp from rope.freq_base
                gguf_name = tensor_map.get_name(name, try_suffixes=(".weight", ".bias"))
                if gguf_name is None:
                    raise ExportError(f"tensor {name} has no GGUF name in llama.cpp's tensor map")
                data = handle.get_tensor(name).float().numpy()
                if name.endswith(("q_proj.weight", "q_proj.bias")):
                    data = permute_for_llama_cpp(data, shape.heads)
                elif name.endswith(("k_proj.weight", "k_proj.bias")):
                    data = permute_for_llama_cpp(data, shape.kv_heads)
                yield (gguf_name, *_encode(data, dtype))


def _encode(data: Any, dtype: str) -> tuple[Any, Any]:
    import gguf
    import numpy as np

    kind = gguf.GGMLQuantizationType
    if data.ndim <= 1 or dtype == "f32":
        return data.astype(np.float32), kind.F32
    if dtype == "q8_0" and gguf.quants.Q8_0.can_quantize(data):
        return gguf.quants.quantize(data, kind.Q8_0), kind.Q8_0
    return data.astype(np.float16), kind.F16  # q8_0 rows not a multiple of 32 fall back to F16, as llama.cpp's


# -- tokenizer -----------------------------------------------------------------------------------

def _add_tokenizer(writer: Any, merged_dir: Path, vocab_size: int) -> None:
    import gguf

    tokenizer_json = json.loads((merged_dir / "tokenizer.json").read_text())
    _require_byte_level_bpe(tokenizer_json, merged_dir)
    tokens, token_types, adds_bos = _vocabulary(merged_dir, vocab_size)
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre(pre_tokenizer_name(tokenizer_json))
    writer.add_token_list(tokens)
    writer.add_token_types(token_types)
    writer.add_add_space_prefix(bool(_byte_level(tokenizer_json).get("add_prefix_space", False)))
    special = gguf.SpecialVocab(merged_dir, load_merges=True, n_vocab=vocab_size)
    special.add_special_token.setdefault("bos", adds_bos)
    special.add_to_gguf(writer, quiet=True)


def _require_byte_level_bpe(tokenizer_json: dict[str, Any], merged_dir: Path) -> None:
    model = tokenizer_json.get("model", {})
    decoder = (tokenizer_json.get("decoder") or {}).get("type")
    if model.get("type") != "BPE" or model.get("byte_fallback") or decoder != "ByteLevel":
        raise ExportError(f"the tokenizer in {merged_dir} is not a byte-level BPE (model {model.get('type')}, "
                          f"decoder {decoder}); this GGUF writer writes gpt2-style vocabularies only")


def _byte_level(tokenizer_json: dict[str, Any]) -> dict[str, Any]:
    pre = tokenizer_json.get("pre_tokenizer") or {}
    steps = pre.get("pretokenizers", [pre]) if pre.get("type") == "Sequence" else [pre]
    return next((step for step in steps if step.get("type") == "ByteLevel"), {})


def pre_tokenizer_name(tokenizer_json: dict[str, Any]) -> str:
    """llama.cpp's name for how text is split before BPE (`tokenizer.ggml.pre`). The converter finds it
    by hashing the tokenisation of a test text; here it is read from the pre-tokenizer's structure:
    GPT-2's regex alone is "gpt-2"; individual digits then GPT-2's regex is "smollm" (SmolLM,
    StarCoder). Anything else is refused, since llama.cpp would split text differently from training."""
    pre = tokenizer_json.get("pre_tokenizer") or {}
    steps = pre.get("pretokenizers", []) if pre.get("type") == "Sequence" else [pre]
    kinds = [step.get("type") for step in steps]
    byte_level_regex = bool(steps) and steps[-1].get("type") == "ByteLevel" and steps[-1].get("use_regex", True)
    if kinds == ["ByteLevel"] and byte_level_regex:
        return "gpt-2"
    if kinds == ["Digits", "ByteLevel"] and steps[0].get("individual_digits") and byte_level_regex:
        return "smollm"
    raise ExportError(f"pre-tokenizer {json.dumps(pre)[:200]} has no llama.cpp equivalent this writer knows "
                      "(GPT-2 byte-level, or individual digits then byte-level)")


def _vocabulary(merged_dir: Path, vocab_size: int) -> tuple[list[str], list[int], bool]:
    """(tokens, token types, whether encoding adds BOS), as the converter's get_vocab_base builds them:
    every id below vocab_size, padding ids as [PAD<i>] (unused), added tokens control when special and
    user-defined otherwise."""
    import gguf
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(merged_dir))
    by_id = {index: token for token, index in tokenizer.get_vocab().items()}
    added = tokenizer.added_tokens_decoder
    tokens, types = [], []
    for index in range(vocab_size):
        if index not in by_id:
            tokens.append(f"[PAD{index}]")
            types.append(gguf.TokenType.UNUSED)
        elif index in added:
            tokens.append(added[index].content)
            types.append(gguf.TokenType.CONTROL if added[index].special else gguf.TokenType.USER_DEFINED)
        else:
            tokens.append(by_id[index])
            types.append(gguf.TokenType.NORMAL)
    ids = tokenizer("a")["input_ids"]
    adds_bos = tokenizer.bos_token_id is not None and bool(ids) and ids[0] == tokenizer.bos_token_id
    return tokens, types, adds_bos
