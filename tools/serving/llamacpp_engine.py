"""Serving registered versions through llama.cpp (`ftagent serve --engine llamacpp`), from GGUF exports.

llama-cpp-python is an optional extra (`pip install -e '.[llamacpp]'`): it compiles llama.cpp from source
when it is installed, so it is never part of the default install. Without it this engine refuses to start
with LlamaCppUnavailable, which says how to install it.

What llama.cpp loads, written on first use into a cache folder (`<home>/gguf-cache`) and reused while its
source is unchanged (each file written or reused is logged and listed in `LlamaCppServer.gguf_files`):

- the base model as GGUF (tools.serving.gguf_export, `gguf_dtype` f16 by default; f32 or q8_0);
- each version's LoRA adapter as a GGUF LoRA adapter (tools.serving.gguf_lora, f32), which llama.cpp
  applies unmerged on that base file (`Llama(lora_path=...)`, scale alpha / rank, as peft's);
- a version whose adapter the GGUF LoRA format cannot hold (DoRA, rsLoRA, per-module alphas, trained
  modules or biases, adapted embeddings) is served merged instead: the adapter folded into the base and
  written as one GGUF of `gguf_dtype`, with a warning naming the reason.

Each served version is one `llama_cpp.Llama` (llama-cpp-python applies one LoRA per model and context,
and turns memory-mapping off when it applies one, so each version holds its own copy of the base weights:
for SmolLM2-135M in f16, ~270 MB a version); the base model's name is answered by a Llama without adapter.

The HTTP surface is this project's (tools.serving.server.build_app: `/v1/models`, `/v1/chat/completions`
plain and streamed, `/health`, `/admin/reload`, API key, A/B splits, each version's system prompt, the
context policy), and the registry is followed the same way (tools.serving.from_registry). The prompt is
the GGUF's own `tokenizer.chat_template` rendered by llama-cpp-python's Jinja2ChatFormatter and tokenized
by llama.cpp. Decoding: `temperature=0` is greedy; otherwise temperature and top_p sample (no top-k, no
min-p, as the default engine); `seed` makes sampling repeatable; an answer stops at the model's EOS token,
as the default engine's does. Differences, said plainly: requests run one at a time (no micro-batching;
llama.cpp's own threads use the cores), and llama.cpp reuses the KV cache of the longest prompt prefix it
last saw for a version, so a greedy answer may differ from a fresh evaluation in the last bits.
With `gguf_dtype` f32 the KV cache is f32 too, and greedy answers equal the default engine's fp32 ones on
the models tested (tests/integration/test_llamacpp_engine.py); f16 and q8_0 are close, not equal.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import logging
import secrets
import shutil
import tempfile
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from tools.serving.batch import Generation, GenerationResult
from tools.serving.export import GGUF_DTYPES, ExportError
from tools.serving.server import ChatEngine, LoadedAdapter, ServedNames, ServingError

logger = logging.getLogger("ftagent.serving.llamacpp")
INSTALL_HINT = ("pip install -e '.[llamacpp]' (llama-cpp-python compiles llama.cpp from source on install: "
                "a C/C++ compiler and cmake, several minutes)")
GGML_TYPE_F32 = 0  # ggml's type id, for llama.cpp's KV cache


class LlamaCppUnavailable(RuntimeError):
    """llama-cpp-python is not installed here, or its compiled library cannot be loaded; the message says
    which and what to do."""


def load_llama_cpp() -> Any:
    """The llama_cpp module; LlamaCppUnavailable (with the install command) when it is missing or broken."""
    try:
        return importlib.import_module("llama_cpp")
    except ImportError as missing:
        if getattr(missing, "name", None) not in (None, "llama_cpp"):
            raise LlamaCppUnavailable(f"llama-cpp-python is installed but cannot be imported ({missing}); "
                                      f"reinstall it: {INSTALL_HINT}") from None
        raise LlamaCppUnavailable(f"the llama.cpp engine needs llama-cpp-python, which is not installed: "
                                  f"{INSTALL_HINT}; or serve with the default engine (`ftagent serve`)") from None
    except (OSError, RuntimeError) as broken:  # its shared library failed to load
        raise LlamaCppUnavailable(f"llama-cpp-python is installed but its llama.cpp library cannot be loaded "
                                  f"({broken}); reinstall it: {INSTALL_HINT}") from None


# -- GGUF files, written once ---------------------------------------------------------------------
@dataclass(frozen=True)
class GgufFile:
    """One GGUF file the engine serves: what it holds, where it came from, and whether it was written now."""

    role: str  # "base", "lora" or "merged"
    source: str  # the Hugging Face folder it was written from
    path: Path
    written: bool  # False: an earlier file was still current and reused
    seconds: float
    why: str = ""  # for a merged version: why its adapter is not a GGUF LoRA

    def describe(self) -> str:
        done = f"wrote in {self.seconds:.1f} s" if self.written else "reused"
        return f"{self.role} GGUF {self.path} ({done}, from {self.source})" + (f": {self.why}" if self.why else "")


class GgufCache:
    """The GGUF files of base models and versions in one folder, named by their source folder (its name
    and a hash of its full path). A file is written when missing or older than any file of its source,
    atomically (a half-written file is never served)."""

    def __init__(self, folder: Path, dtype: str = "f16") -> None:
        if dtype not in GGUF_DTYPES:
            raise ExportError(f"GGUF dtype {dtype!r} is not one of {', '.join(GGUF_DTYPES)}")
        self.folder, self.dtype = Path(folder), dtype

    def base(self, base_model_path: str) -> GgufFile:
        """The base model alone as GGUF in the cache's dtype."""
        from tools.serving.gguf_export import write_gguf

        target = self._path("base", base_model_path, self.dtype)
        return self._ensure("base", base_model_path, target,
                            lambda folder: write_gguf(folder, target, self.dtype), merge_from=(base_model_path, None))

    def version(self, adapter_dir: str, base_model_path: str) -> GgufFile:
        """The version as a GGUF LoRA adapter, or, when the format cannot hold it, merged (with a warning)."""
        from tools.serving.gguf_export import write_gguf
        from tools.serving.gguf_lora import AdapterNotRepresentable, write_gguf_lora

        lora = self._path("lora", adapter_dir, "f32")
        try:
            return self._ensure("lora", adapter_dir, lora,
                                lambda _: write_gguf_lora(Path(adapter_dir), Path(base_model_path), lora))
        except AdapterNotRepresentable as reason:
            why = f"served merged, since {reason}"
            logger.warning("llama.cpp: %s %s", adapter_dir, why)
        merged = self._path("merged", adapter_dir, self.dtype)
        made = self._ensure("merged", adapter_dir, merged, lambda folder: write_gguf(folder, merged, self.dtype),
                            merge_from=(base_model_path, adapter_dir))
        return replace(made, why=why)

    def _path(self, role: str, source: str, dtype: str) -> Path:
        resolved = str(Path(source).resolve())
        digest = hashlib.sha256(resolved.encode()).hexdigest()[:12]
        return self.folder / f"{Path(resolved).name}-{digest}-{role}-{dtype}.gguf"

    def _ensure(self, role: str, source: str, target: Path, write: Any,
                merge_from: tuple[str, str | None] | None = None) -> GgufFile:
        """Reuse `target` while it is newer than every file of `source`, else write it: `write(folder)`
        gets the merged Hugging Face folder when `merge_from` = (base, adapter or None) asks for one."""
        if _is_current(target, Path(source)):
            return GgufFile(role, source, target, False, 0.0)
        started = time.perf_counter()
        self.folder.mkdir(parents=True, exist_ok=True)
        if merge_from is None:
            write(None)
        else:
            self._write_from_merged(merge_from, write)
        made = GgufFile(role, source, target, True, time.perf_counter() - started)
        logger.info("llama.cpp: %s", made.describe())
        return made

    def _write_from_merged(self, merge_from: tuple[str, str | None], write: Any) -> None:
        """A merged f32 folder (tools.serving.export.export_merged) in a scratch folder of the cache, handed
        to `write` and removed afterwards: only the GGUF is kept."""
        from tools.serving.export import export_merged

        scratch = Path(tempfile.mkdtemp(prefix=".merged-", dir=self.folder))
        try:
            write(export_merged(merge_from[0], merge_from[1], scratch / "merged"))
        finally:
            shutil.rmtree(scratch, ignore_errors=True)


def _is_current(target: Path, source: Path) -> bool:
    """`target` exists and no file of the `source` folder changed after it was written."""
    if not target.is_file():
        return False
    files = [path for path in source.iterdir() if path.is_file()] if source.is_dir() else []
    return bool(files) and all(path.stat().st_mtime <= target.stat().st_mtime for path in files)


# -- the engine -----------------------------------------------------------------------------------
class GgufTokenizer:
    """Decoding of llama.cpp's token ids, in the shape the shared server code uses (`decode`, `eos_token_id`,
    as transformers' tokenizers have them): skip_special_tokens drops control tokens, as theirs does."""

    def __init__(self, llama: Any) -> None:
        self.llama = llama
        self.eos_token_id = int(llama.token_eos())

    def decode(self, token_ids: int | Sequence[int], skip_special_tokens: bool = False, **_: Any) -> str:
        ids = [token_ids] if isinstance(token_ids, int) else list(token_ids)
        return self.llama.detokenize(ids, special=not skip_special_tokens).decode("utf-8", errors="replace")


class LlamaCppServer(ChatEngine):
    """Registered versions served by llama.cpp: one Llama per version (the base GGUF with the version's
    GGUF LoRA, or the version's merged GGUF) and one for the base model, one request at a time."""

    def __init__(self, base_model_path: str, adapters: Mapping[str, str], *, cache_dir: Path,
                 base_name: str | None = None, aliases: Mapping[str, str] | None = None,
                 ab_splits: Mapping[str, Mapping[str, float]] | None = None,
                 system_prompts: Mapping[str, str] | None = None, context_length: int | None = None,
                 default_max_tokens: int = 256, assignment_log: Path | None = None, threads: int | None = None,
                 gguf_dtype: str = "f16") -> None:
        import torch

        self.llama_cpp = load_llama_cpp()  # before any export: without llama.cpp there is nothing to write for
        # as many threads as torch (the default engine) uses; llama-cpp-python's own default is half the cores
        self.base_model_path, self.threads = str(base_model_path), threads or torch.get_num_threads()
        self.cache = GgufCache(Path(cache_dir), gguf_dtype)
        self.base_gguf = self.cache.base(self.base_model_path)
        self.gguf_files: list[GgufFile] = [self.base_gguf]  # every GGUF written or reused, in order
        context = context_length or _trained_context(Path(base_model_path))
        super().__init__(base_name or Path(self.base_model_path.rstrip("/")).name, context, default_max_tokens,
                         assignment_log)
        self._lock = threading.Lock()  # llama.cpp runs one request at a time, on all its threads
        self.base_llama = self._open(self.base_gguf.path)
        self.tokenizer = GgufTokenizer(self.base_llama)
        self.formatter = _chat_formatter(self.base_llama, self.base_gguf.path)
        self._llamas: dict[str, Any] = {}  # adapter id -> its Llama
        self.update(ServedNames(dict(adapters), dict(aliases or {}),
                                {name: dict(arms) for name, arms in (ab_splits or {}).items()},
                                dict(system_prompts or {})), strict=True)

    def _open(self, model_path: Path, lora_path: Path | None = None) -> Any:
        f32 = {"type_k": GGML_TYPE_F32, "type_v": GGML_TYPE_F32} if self.cache.dtype == "f32" else {}
        return self.llama_cpp.Llama(model_path=str(model_path), lora_path=str(lora_path) if lora_path else None,
                                    n_ctx=self.context_length, n_threads=self.threads, n_threads_batch=self.threads,
                                    verbose=False, **f32)

    # adapters
    def _load(self, path: str) -> LoadedAdapter:
        if not (Path(path) / "adapter_config.json").exists():
            raise ValueError(f"no LoRA adapter (adapter_config.json) in {path}")
        gguf = self.cache.version(path, self.base_model_path)
        llama = (self._open(self.base_gguf.path, gguf.path) if gguf.role == "lora" else self._open(gguf.path))
        loaded = LoadedAdapter(self._next_adapter_id(), path)
        with self._lock:
            self._llamas[loaded.adapter_id] = llama
            self.gguf_files.append(gguf)
        return loaded

    def _unload(self, adapters: Sequence[LoadedAdapter]) -> None:
        with self._lock:
            for adapter in adapters:
                llama = self._llamas.pop(adapter.adapter_id, None)
                if llama is not None:
                    llama.close()

    def _holds(self, adapter_id: str) -> bool:
        return adapter_id in self._llamas

    def close(self) -> None:
        with self._lock:
            for llama in [*self._llamas.values(), self.base_llama]:
                llama.close()
            self._llamas.clear()

    # requests
    def _prompt_ids(self, messages: list[dict[str, str]]) -> Any:
        import numpy as np

        prompt = self.formatter(messages=messages).prompt
        return np.array([self.base_llama.tokenize(prompt.encode("utf-8"), add_bos=False, special=True)])

    def generate(self, job: Generation, streamer: Any = None,
                 stop: threading.Event | None = None) -> GenerationResult:
        """One answer with the job's version, feeding `streamer` (put/end) as transformers' generate does."""
        with self._lock:
            self._check_still_served(job)
            llama = self._llamas[job.adapter] if job.adapter is not None else self.base_llama
            tokens = self._decode(llama, job, streamer, stop)
        return self._result(job, tokens)

    def _decode(self, llama: Any, job: Generation, streamer: Any, stop: threading.Event | None) -> list[int]:
        import numpy as np

        llama.set_seed(job.seed if job.seed is not None else secrets.randbits(31))
        if streamer is not None:
            streamer.put(job.input_ids)
        tokens: list[int] = []
        try:
            for token in llama.generate(job.input_ids[0].tolist(), **_sampling(job)):
                tokens.append(int(token))
                if streamer is not None:
                    streamer.put(np.array([token]))
                if (token == self.tokenizer.eos_token_id or len(tokens) >= job.max_new_tokens
                        or (stop is not None and stop.is_set())):
                    break
        finally:
            if streamer is not None:
                streamer.end()
        return tokens


def _sampling(job: Generation) -> dict[str, Any]:
    """llama.cpp's sampler settings for the job: greedy at temperature 0, else temperature and top_p only
    (top_k 0 and min_p 0 turn those samplers off), no repetition penalty."""
    return {"temp": job.temperature, "top_p": job.top_p, "top_k": 0, "min_p": 0.0, "typical_p": 1.0,
            "repeat_penalty": 1.0}


def _trained_context(base_model_path: Path) -> int:
    """The base model's max_position_embeddings (the default engine's default context), else 2048."""
    try:
        config = json.loads((base_model_path / "config.json").read_text())
    except (OSError, json.JSONDecodeError):
        return 2048
    return int(config.get("max_position_embeddings") or 2048)


def _chat_formatter(llama: Any, gguf_path: Path) -> Any:
    """llama-cpp-python's Jinja2 formatter on the GGUF's own chat template (tokenizer.chat_template)."""
    from llama_cpp.llama_chat_format import Jinja2ChatFormatter

    template = llama.metadata.get("tokenizer.chat_template")
    if not template:
        raise ServingError(500, f"{gguf_path} has no tokenizer.chat_template: llama.cpp cannot format chat "
                                "messages for it", "no_chat_template")
    eos, bos = llama.token_eos(), llama.token_bos()
    return Jinja2ChatFormatter(template=template, eos_token=_token_text(llama, eos),
                               bos_token=_token_text(llama, bos), stop_token_ids=[eos])


def _token_text(llama: Any, token_id: int) -> str:
    return llama.detokenize([token_id], special=True).decode("utf-8", errors="replace") if token_id >= 0 else ""
