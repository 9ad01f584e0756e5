"""Export a tuned model for other runtimes.

Two outputs, both checked before they are handed over:
- a merged Hugging Face folder (the LoRA adapter folded into the base weights) that transformers,
  vLLM and llama.cpp's `convert_hf_to_gguf.py` load as they load any published model;
- a GGUF file written the way `convert_hf_to_gguf.py` writes Llama models, for llama.cpp, Ollama and
  LM Studio (llama.cpp's converter is not on PyPI, so this follows its conventions with the `gguf`
  package it is built on).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

EXPORT_FORMATS = ("safetensors", "gguf")
SAFETENSORS_DTYPES = {"f32": "float32", "f16": "float16", "bf16": "bfloat16"}
GGUF_DTYPES = ("f32", "f16", "q8_0")
DEFAULT_DTYPE = {"safetensors": "f32", "gguf": "f16"}
_SAFETENSORS_CODES = {"float32": "F32", "float16": "F16", "bfloat16": "BF16"}
_PEFT_MARKERS = ("lora_", "base_model.model.", ".base_layer.", "modules_to_save")
_GGUF_ARCHITECTURES = {"LlamaForCausalLM": "LLAMA", "MistralForCausalLM": "LLAMA", "Qwen2ForCausalLM": "QWEN2"}


EXPORT_MARKER = ".ftagent-export"  # in every merged folder we write: only such a folder is ever replaced


class ExportError(ValueError):
    """The export cannot be made, or its output breaks a convention a runtime relies on; the message says which."""


# -- where an export may go: it never deletes what it did not write -------------------------------

def check_folder_target(target: Path, replace_unmarked: bool = False) -> None:
    """Refuse a folder target that holds anything but an earlier export of ours (an empty folder is fine).
    `replace_unmarked`: also replace an unmarked folder (the home's own export folders, written before the
    marker existed)."""
    if target.is_symlink() or (target.exists() and not target.is_dir()):
        raise ExportError(f"{target} exists and is not a folder; export into a new or empty folder "
                          "(nothing was changed)")
    if (target.is_dir() and any(target.iterdir()) and not (target / EXPORT_MARKER).is_file()
            and not replace_unmarked):
        raise ExportError(f"{target} is not empty and is not an earlier ftagent export; export into a new or "
                          "empty folder, or delete it yourself (nothing was deleted)")


def check_file_target(target: Path, magic: bytes) -> None:
    """Refuse a file target that exists and is not an earlier export of the same kind (starts with `magic`)."""
    if target.is_symlink() or target.is_dir() or (target.exists() and not target.is_file()):
        raise ExportError(f"{target} exists and is not a file we may replace (nothing was changed)")
    if target.is_file():
        with target.open("rb") as handle:
            if handle.read(len(magic)) != magic:
                raise ExportError(f"{target} exists and is not an earlier {magic.decode()} export; choose another "
                                  "file name or delete it yourself (nothing was deleted)")


def staging_folder(target: Path) -> Path:
    """A new, uniquely named folder next to `target` (same file system, so the final rename is atomic)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".partial", dir=target.parent))


def swap_in(staging: Path, target: Path) -> None:
    """Put `staging` at `target` by renames: onto an empty folder directly, else the old export is moved
    aside first and removed only once the new one is in place."""
    if target.is_dir() and any(target.iterdir()):
        old = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".old", dir=target.parent))
        os.replace(target, old / target.name)
        os.replace(staging, target)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(staging, target)


def resolve_export_options(fmt: str, dtype: str | None) -> str:
    """The dtype to export with: `dtype` when the format supports it, else the format's default.
    safetensors: f32 (the training precision), f16, bf16. gguf: f16 (llama.cpp's default), f32, q8_0."""
    if fmt not in EXPORT_FORMATS:
        raise ExportError(f"unknown export format {fmt!r}; one of {', '.join(EXPORT_FORMATS)}")
    allowed = tuple(SAFETENSORS_DTYPES) if fmt == "safetensors" else GGUF_DTYPES
    chosen = dtype or DEFAULT_DTYPE[fmt]
    if chosen not in allowed:
        raise ExportError(f"dtype {chosen!r} cannot be written as {fmt}; one of {', '.join(allowed)}")
    return chosen


# -- merged safetensors --------------------------------------------------------------------------

def merge_adapter(base_model_path: str, adapter_dir: str | Path | None, target: Path, dtype: str = "f32") -> Path:
    """The adapter folded into the base weights (peft merge_and_unload), saved with save_pretrained in
    `dtype`, with the tokenizer (and its chat template) next to it. The one merge every caller uses.
    Without an adapter, the base model alone is saved the same way (llama.cpp's base for GGUF LoRAs)."""
    import torch

    from tools.models.loading import load_for_inference

    model, tokenizer = load_for_inference(base_model_path, str(adapter_dir) if adapter_dir is not None else None)
    merged = model.merge_and_unload() if adapter_dir is not None else model
    merged = merged.to(getattr(torch, SAFETENSORS_DTYPES[dtype]))
    merged.save_pretrained(str(target), safe_serialization=True)
    tokenizer.save_pretrained(str(target))
    return target


def export_merged(base_model_path: str, adapter_dir: str | Path | None, target: Path, dtype: str = "f32",
                  replace_unmarked: bool = False) -> Path:
    """A standalone model folder at `target`: merged weights, a config that says their dtype and carries no
    quantization_config, generation_config.json, the tokenizer with its chat template (`adapter_dir` None: the
    base model alone, checked the same way). Written in a staging
    folder and renamed into place; `target` may be new, empty or an earlier export of ours (see
    `check_folder_target`), never a folder of someone else's files. Raises ExportError for a target it must
    not replace, and listing every convention the folder breaks (see `export_problems`)."""
    if dtype not in SAFETENSORS_DTYPES:
        raise ExportError(f"dtype {dtype!r} cannot be written as safetensors; one of {', '.join(SAFETENSORS_DTYPES)}")
    check_folder_target(target, replace_unmarked)
    staging = staging_folder(target)
    try:
        merge_adapter(base_model_path, adapter_dir, staging, dtype)
        _normalise_config(staging, SAFETENSORS_DTYPES[dtype])
        _ensure_generation_config(staging)
        _copy_template_to_tokenizer_config(staging)
        check_export(staging)
        (staging / EXPORT_MARKER).write_text(json.dumps({"adapter": str(adapter_dir), "dtype": dtype}) + "\n")
        check_folder_target(target, replace_unmarked)  # nothing appeared there while we merged
        swap_in(staging, target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return target


def _normalise_config(folder: Path, dtype_name: str) -> None:
    """No quantization_config (the GGUF base leaves one; vLLM would look for a quantisation method and
    peft would refuse the model), and the dtype under both names: `dtype` (transformers 5) and
    `torch_dtype` (what vLLM and transformers 4 read)."""
    path = folder / "config.json"
    config = json.loads(path.read_text())
    config.pop("quantization_config", None)
    config["dtype"] = config["torch_dtype"] = dtype_name
    path.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")


def _ensure_generation_config(folder: Path) -> None:
    """vLLM takes default sampling settings and stop tokens from generation_config.json."""
    if (folder / "generation_config.json").exists():
        return
    from transformers import AutoConfig, GenerationConfig

    GenerationConfig.from_model_config(AutoConfig.from_pretrained(str(folder))).save_pretrained(str(folder))


def _copy_template_to_tokenizer_config(folder: Path) -> None:
    """transformers 5 saves the chat template as chat_template.jinja; readers built for transformers 4
    (older vLLM and llama.cpp converters) look in tokenizer_config.json, so it goes in both."""
    template_file, config_file = folder / "chat_template.jinja", folder / "tokenizer_config.json"
    if not template_file.exists() or not config_file.exists():
        return
    config = json.loads(config_file.read_text())
    config.setdefault("chat_template", template_file.read_text())
    config_file.write_text(json.dumps(config, indent=2, ensure_ascii=False) + "\n")


# -- the check -----------------------------------------------------------------------------------

@dataclass(frozen=True)
class TensorHeader:
    name: str
    dtype: str  # safetensors code: F32, F16, BF16, ...
    shape: tuple[int, ...]


def check_export(folder: Path) -> None:
    """Raise ExportError listing every problem `export_problems` finds."""
    problems = export_problems(folder)
    if problems:
        raise ExportError(f"{folder} is not a model vLLM and llama.cpp accept:\n- " + "\n- ".join(problems))


def export_problems(folder: Path) -> list[str]:
    """What in `folder` breaks the conventions its readers rely on (empty when none):

    vLLM reads config.json `architectures[0]` to pick its model class, `model_type` and the shape fields,
    `torch_dtype`/`dtype` for `--dtype auto`, and treats any `quantization_config` as a quantisation
    method to load; it loads *.safetensors by Hugging Face module name (model.layers.N.self_attn.q_proj...,
    no peft prefixes or lora_A/lora_B), skips lm_head when `tie_word_embeddings` is true and needs it
    when false; it takes sampling defaults and stop ids from generation_config.json and the chat
    template from the tokenizer files (tokenizer_config.json or chat_template.jinja) for /v1/chat.
    llama.cpp's convert_hf_to_gguf.py reads the same `architectures[0]` (its model class), the
    hyperparameters (num_hidden_layers, hidden_size, num_attention_heads, num_key_value_heads,
    intermediate_size, rms_norm_eps, rope_theta, max_position_embeddings, vocab_size), maps every
    tensor name through gguf's tensor map (an unmapped name stops it), reads safetensors whose header
    metadata says format "pt", and reads tokenizer.json (vocabulary, merges, added tokens),
    tokenizer_config.json (special tokens, add_bos_token, chat_template) and config.json's *_token_id;
    the vocabulary must fit in vocab_size rows of the embedding.
    """
    config, problems = _read_config(folder)
    if config is None:
        return problems
    tensors, weight_problems = read_tensor_headers(folder)
    problems += weight_problems + _tensor_problems(config, tensors) + _tokenizer_problems(folder, config)
    if not (folder / "generation_config.json").exists():
        problems.append("generation_config.json is missing (vLLM reads default sampling settings and stop ids there)")
    return problems


def _read_config(folder: Path) -> tuple[dict[str, Any] | None, list[str]]:
    path = folder / "config.json"
    if not path.exists():
        return None, [f"config.json is missing from {folder}"]
    try:
        config = json.loads(path.read_text())
    except json.JSONDecodeError as error:
        return None, [f"config.json is not valid JSON: {error}"]
    problems = []
    architectures = config.get("architectures")
    if not (isinstance(architectures, list) and architectures and isinstance(architectures[0], str)):
        problems.append("config.json has no `architectures` list (vLLM and llama.cpp choose the model class by it)")
    if not config.get("model_type"):
        problems.append("config.json has no `model_type`")
    if "quantization_config" in config:
        problems.append("config.json keeps a `quantization_config` although the weights are not quantised")
    if not (config.get("dtype") or config.get("torch_dtype")):
        problems.append("config.json states no `torch_dtype`/`dtype`")
    return config, problems


def read_tensor_headers(folder: Path) -> tuple[list[TensorHeader], list[str]]:
    """Every tensor's name, dtype and shape from the safetensors headers (no weights are loaded)."""
    from safetensors import safe_open

    files = sorted(folder.glob("*.safetensors"))
    if not files:
        return [], [f"no *.safetensors weights in {folder}"]
    tensors, problems = [], []
    for file in files:
        with safe_open(str(file), framework="pt") as handle:
            if (handle.metadata() or {}).get("format") != "pt":
                problems.append(f"{file.name} header metadata lacks format 'pt' (transformers refuses such files)")
            for name in handle.keys():  # noqa: SIM118 - safe_open is not iterable
                view = handle.get_slice(name)
                tensors.append(TensorHeader(name, view.get_dtype(), tuple(view.get_shape())))
    return tensors, problems


def _tensor_problems(config: dict[str, Any], tensors: list[TensorHeader]) -> list[str]:
    problems = [f"tensor {t.name} is a peft/LoRA leftover, not a Hugging Face module weight"
                for t in tensors if any(marker in t.name for marker in _PEFT_MARKERS)]
    names = {t.name for t in tensors}
    declared = _SAFETENSORS_CODES.get(config.get("dtype") or config.get("torch_dtype") or "")
    floats = {t.dtype for t in tensors if t.dtype in _SAFETENSORS_CODES.values()}
    if declared and floats and floats != {declared}:
        problems.append(f"config.json says {declared} but the tensors are {', '.join(sorted(floats))}")
    if not config.get("tie_word_embeddings", False) and tensors and "lm_head.weight" not in names:
        problems.append("tie_word_embeddings is false but lm_head.weight is missing (no output layer)")
    embedding = next((t for t in tensors if t.name.endswith("embed_tokens.weight")), None)
    if embedding and config.get("vocab_size") and embedding.shape[0] != config["vocab_size"]:
        problems.append(f"embed_tokens has {embedding.shape[0]} rows but vocab_size is {config['vocab_size']}")
    return problems + _unmappable_names(config, names)


def _unmappable_names(config: dict[str, Any], names: set[str]) -> list[str]:
    """Names llama.cpp's converter cannot map to GGUF (it stops on the first); only for architectures
    whose gguf tensor map we know."""
    import gguf

    arch = _GGUF_ARCHITECTURES.get((config.get("architectures") or [""])[0])
    if arch is None or not config.get("num_hidden_layers"):
        return []
    tensor_map = gguf.get_tensor_name_map(getattr(gguf.MODEL_ARCH, arch), config["num_hidden_layers"])
    return [f"tensor {name} has no GGUF name in llama.cpp's tensor map" for name in sorted(names)
            if not name.endswith("rotary_emb.inv_freq")
            and tensor_map.get_name(name, try_suffixes=(".weight", ".bias")) is None]


def _tokenizer_problems(folder: Path, config: dict[str, Any]) -> list[str]:
    problems = []
    if not (folder / "tokenizer.json").exists() and not (folder / "tokenizer.model").exists():
        problems.append("no tokenizer.json (or sentencepiece tokenizer.model)")
    tokenizer_config: dict[str, Any] = {}
    if (folder / "tokenizer_config.json").exists():
        tokenizer_config = json.loads((folder / "tokenizer_config.json").read_text())
    else:
        problems.append("tokenizer_config.json is missing (special tokens, add_bos_token, chat template)")
    has_template = bool(tokenizer_config.get("chat_template")) or any(
        (folder / name).exists() for name in ("chat_template.jinja", "chat_template.json"))
    if not has_template:
        problems.append("no chat template (tokenizer_config.json or chat_template.jinja): /v1/chat cannot format")
    if config.get("eos_token_id") is None and not tokenizer_config.get("eos_token"):
        problems.append("no end-of-sequence token in config.json or tokenizer_config.json")
    size = _tokenizer_size(folder)
    if size and config.get("vocab_size") and size > config["vocab_size"]:
        problems.append(f"the tokenizer has {size} tokens but vocab_size is {config['vocab_size']}")
    return problems


def _tokenizer_size(folder: Path) -> int | None:
    path = folder / "tokenizer.json"
    if not path.exists():
        return None
    tokenizer = json.loads(path.read_text())
    vocab = tokenizer.get("model", {}).get("vocab") or {}
    ids = list(vocab.values()) if isinstance(vocab, dict) else list(range(len(vocab)))  # BPE map, unigram list
    ids += [token["id"] for token in tokenizer.get("added_tokens", [])]
    return max(ids) + 1 if ids else None
