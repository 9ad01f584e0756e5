"""A peft LoRA adapter as a llama.cpp GGUF LoRA adapter, following llama.cpp's convert_lora_to_gguf.py.

Why: llama.cpp applies a GGUF LoRA on top of an unchanged base GGUF (`Llama(lora_path=...)`,
`llama-server --lora`), so a version is a few MB next to one base file instead of a whole merged model.
llama.cpp's converter is not on PyPI; this writes what it writes for Llama models, with the `gguf` package:

- metadata: general.architecture "llama" (llama.cpp refuses an adapter of another architecture than
  its base), general.type "adapter", adapter.type "lora", adapter.lora.alpha (float32: llama.cpp
  scales each pair by alpha / rank, the rank read from the tensor, as peft does with lora_alpha / r);
- tensors: each adapted weight's GGUF name (gguf's tensor map, as the base GGUF names it) with
  ".lora_a" (peft's lora_A, shape (rank, in)) and ".lora_b" (lora_B, shape (out, rank)); lora_b of
  q_proj and k_proj gets the same row permutation as the base's q and k weights (its rows are the
  weight's output rows), lora_a keeps peft's layout;
- dtype: f32 (exact; LoRA tensors are small) or f16.

What llama.cpp's format cannot hold is refused with AdapterNotRepresentable naming it (serve or export
the version merged instead): DoRA, rsLoRA and per-module alphas (one alpha per file, divided by the
rank), trained bias or whole modules (`modules_to_save`), adapted embeddings, an adapted output layer
tied to the embeddings, and weights the tensor map does not know.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tools.serving.export import ExportError
from tools.serving.gguf_export import (
    SUPPORTED_ARCHITECTURES,
    LlamaShape,
    permute_for_llama_cpp,
    write_gguf_file,
)

LORA_DTYPES = ("f32", "f16")
PEFT_PREFIX = "base_model.model."
LORA_SUFFIXES = {".lora_A.weight": "lora_a", ".lora_B.weight": "lora_b"}


class AdapterNotRepresentable(ExportError):
    """The adapter uses something llama.cpp's GGUF LoRA format cannot hold; the message says what."""


def adapter_config_problems(adapter_config: dict[str, Any]) -> list[str]:
    """What in adapter_config.json a GGUF LoRA cannot express (empty when it can)."""
    checks = [
        (adapter_config.get("peft_type", "LORA") != "LORA", f"peft type {adapter_config.get('peft_type')!r}"),
        (bool(adapter_config.get("use_dora")), "DoRA (a magnitude vector per weight)"),
        (bool(adapter_config.get("use_rslora")), "rsLoRA (scale alpha/sqrt(r); llama.cpp scales alpha/r)"),
        (bool(adapter_config.get("alpha_pattern")), "per-module alphas (alpha_pattern)"),
        (bool(adapter_config.get("modules_to_save")), f"whole trained modules {adapter_config.get('modules_to_save')}"),
        (adapter_config.get("bias", "none") != "none" or bool(adapter_config.get("lora_bias")), "trained biases"),
        (bool(adapter_config.get("layer_replication")), "layer replication"),
    ]
    return [problem for failed, problem in checks if failed]


def lora_pairs(adapter_dir: Path) -> dict[str, dict[str, Any]]:
    """{Hugging Face weight name: {"lora_a": array, "lora_b": array}} from adapter_model.safetensors;
    AdapterNotRepresentable for a tensor that is not a LoRA factor of a linear weight."""
    from safetensors.numpy import load_file

    weights = adapter_dir / "adapter_model.safetensors"
    if not weights.is_file():
        raise ExportError(f"no adapter_model.safetensors in {adapter_dir}: not a saved peft LoRA adapter")
    pairs: dict[str, dict[str, Any]] = {}
    for name, data in load_file(str(weights)).items():
        suffix = next((s for s in LORA_SUFFIXES if name.endswith(s)), None)
        if suffix is None:
            raise AdapterNotRepresentable(f"adapter tensor {name} is not a LoRA factor of a linear weight "
                                          "(embedding LoRA, DoRA magnitude or a trained module)")
        weight = name.removeprefix(PEFT_PREFIX).removesuffix(suffix) + ".weight"
        pairs.setdefault(weight, {})[LORA_SUFFIXES[suffix]] = data.astype("float32")
    for weight, pair in pairs.items():
        if len(pair) != 2:
            raise ExportError(f"{weights} holds only {', '.join(pair)} for {weight}: the adapter is incomplete")
    return pairs


def gguf_lora_tensors(pairs: dict[str, dict[str, Any]], base_config: dict[str, Any],
                      dtype: str) -> list[tuple[str, Any]]:
    """(GGUF name, array) for every factor, named as the base GGUF names the weight it adapts."""
    import gguf
    import numpy as np

    shape = LlamaShape.from_config(base_config)
    tensor_map = gguf.get_tensor_name_map(gguf.MODEL_ARCH.LLAMA, shape.layers)
    tied = bool(base_config.get("tie_word_embeddings", False))
    tensors = []
    for weight, pair in sorted(pairs.items()):
        gguf_name = tensor_map.get_name(weight, try_suffixes=(".weight",))
        if gguf_name is None or gguf_name == "token_embd.weight":
            raise AdapterNotRepresentable(f"the adapter changes {weight}, which has no GGUF LoRA name llama.cpp "
                                          "applies (only linear weights of the decoder layers)")
        if gguf_name == "output.weight" and tied:
            raise AdapterNotRepresentable(f"the adapter changes {weight}, but the base ties it to the embeddings: "
                                          "its GGUF has no separate output weight to adapt")
        lora_b = pair["lora_b"]
        if weight.endswith("q_proj.weight"):
            lora_b = permute_for_llama_cpp(lora_b, shape.heads)
        elif weight.endswith("k_proj.weight"):
            lora_b = permute_for_llama_cpp(lora_b, shape.kv_heads)
        kind = np.float32 if dtype == "f32" else np.float16
        tensors += [(f"{gguf_name}.lora_a", np.ascontiguousarray(pair["lora_a"], dtype=kind)),
                    (f"{gguf_name}.lora_b", np.ascontiguousarray(lora_b, dtype=kind))]
    return tensors


def write_gguf_lora(adapter_dir: Path, base_model_dir: Path, out_file: Path, dtype: str = "f32") -> Path:
    """Write the peft adapter in `adapter_dir` (trained on the Llama model in `base_model_dir`, whose
    config.json gives the layer and head counts) as a GGUF LoRA adapter at `out_file`, atomically.
    AdapterNotRepresentable when the format cannot hold it; ExportError for a bad dtype, a base of another
    architecture or a target that is not an earlier GGUF."""
    import gguf

    if dtype not in LORA_DTYPES:
        raise ExportError(f"dtype {dtype!r} cannot be written as a GGUF LoRA; one of {', '.join(LORA_DTYPES)}")
    adapter_config = _read_json(adapter_dir / "adapter_config.json", "a peft adapter")
    problems = adapter_config_problems(adapter_config)
    if problems:
        raise AdapterNotRepresentable(f"{adapter_dir} uses {'; '.join(problems)}: llama.cpp's GGUF LoRA "
                                      "cannot hold that (serve or export the version merged)")
    base_config = _read_json(base_model_dir / "config.json", "the base model's config")
    architecture = (base_config.get("architectures") or ["?"])[0]
    if architecture not in SUPPORTED_ARCHITECTURES:
        raise ExportError(f"GGUF LoRA adapters are written for Llama-architecture bases; {base_model_dir} "
                          f"is {architecture}")
    tensors = gguf_lora_tensors(lora_pairs(adapter_dir), base_config, dtype)

    def fill(writer: Any) -> None:
        writer.add_type(gguf.GGUFType.ADAPTER)
        writer.add_name(adapter_dir.resolve().name)
        writer.add_string(gguf.Keys.Adapter.TYPE, "lora")
        writer.add_float32(gguf.Keys.Adapter.LORA_ALPHA, float(adapter_config.get("lora_alpha", 8)))
        writer.add_file_type(gguf.LlamaFileType.ALL_F32 if dtype == "f32" else gguf.LlamaFileType.MOSTLY_F16)
        for name, data in tensors:
            writer.add_tensor(name, data)

    return write_gguf_file(out_file, gguf.MODEL_ARCH_NAMES[gguf.MODEL_ARCH.LLAMA], fill)


def _read_json(path: Path, what: str) -> dict[str, Any]:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise ExportError(f"{path} is missing: {path.parent} is not {what}") from None
    except json.JSONDecodeError as error:
        raise ExportError(f"{path} is not valid JSON: {error}") from None
