"""An OpenAI-compatible chat server: one base model in memory, LoRA adapters chosen per request.

Endpoints: ``GET /v1/models``, ``POST /v1/chat/completions`` (plain, or SSE with ``stream=true``
in OpenAI's chunk format ending with ``data: [DONE]``), ``GET /health`` (served names, and how many
generate calls ran per batch size) and ``POST /admin/reload`` (re-read the registry, when the app
follows one; see ``tools.serving.from_registry``).

Policies, decided here so every front door behaves the same:

- **Names.** Requests name models by registry name. The base model is served under its own name
  with every adapter disabled. An alias (a family name) points to one version; an A/B split
  points to several versions with weights.
- **One model, one lock.** All adapters live on one peft model. The lock covers every use of it:
  a generation (one request, or one micro-batch whose rows name their adapters with peft's
  ``adapter_names=``) and every adapter load or unload, so no request ever runs with another's
  adapter or with a half-loaded one. Which requests share a batch: see ``tools.serving.batch``
  (greedy ones, and unseeded sampling with equal settings; streamed and seeded requests run alone).
- **Changing names while serving.** ``ModelServer.update`` loads new adapters, swaps the whole name
  table in one assignment, then unloads adapters no longer named. A request that resolved its name
  before the swap and finds its adapter gone when it reaches the model gets the usual 404.
  Following the registry (polling, ``POST /admin/reload``) is ``tools.serving.from_registry``.
- **Context.** A prompt that fills the whole context window (``context_length``, by default the
  model's ``max_position_embeddings``) is refused with HTTP 400 and both numbers. Otherwise
  ``max_tokens`` is clamped to the room left and the answer ends with ``finish_reason="length"``.
- **Sampling.** ``temperature=0`` is greedy decoding; otherwise temperature and ``top_p`` sample.
  ``seed`` makes sampling repeatable.
- **Bad input.** Unknown model: 404 whose error lists the available models. Malformed body: 422
  whose error names the field (``messages.0.role``). Errors use OpenAI's ``{"error": {...}}``.
- **A/B.** A split's arm is chosen by a hash of the request id (the ``X-Request-ID`` header, else
  the ``user`` field, else a fresh random id), so the same caller always gets the same version.
  Every assignment is logged (logger ``ftagent.serving``, and a JSONL file when given).
- **Speed.** Weights are fp32 on a CPU and bf16 on a GPU with bf16 (``precision="auto"``; see
  ``tools.models.loading.inference_dtype`` for why a CPU with native bf16 still decodes in fp32). When
  exactly one adapter is served, its requests run on a second copy of the weights with that adapter
  merged in (``merge_single_adapter``): no LoRA layers per token. Base requests, rows of a batch that
  mix versions, and every request while several adapters share the base take peft's unmerged path.
  ``precision="int8"`` (CPU) makes that merged copy int8 weight-only (``tools.models.int8``, answers close
  to fp32's but not equal); ``precision="int4"`` int4 in groups of 32 with an int8 head
  (``tools.models.int4``) and an int4 copy of the head that greedy decoding rescores. Greedy requests to
  either (streamed ones too) decode with ``tools.models.decoding.greedy_decode``, a request alone through
  the one-row decoder of a Llama-family model (``tools.models.llama_decoder``: 1.5x transformers' int4
  layers on SmolLM2-135M); the shared model stays fp32.
- **System prompt.** A served name may carry the system prompt its adapter was trained with; it
  is prepended only when the request has no system message of its own.
- **Who may call.** With an API key (``api_key``: ``ftagent serve --api-key-file``, the
  ``serving_api_key`` setting or $FTAGENT_SERVING_API_KEY) every ``/v1/*`` and ``/admin/*`` request
  needs ``Authorization: Bearer <key>`` (what OpenAI clients send), else 401; ``/health`` stays open.
  Bound to a loopback address, the server answers only requests whose Host header names loopback
  (``127.0.0.1``, ``localhost``, ``[::1]``), so a web page that rebinds its own name to 127.0.0.1 gets
  403, and a POST that carries a browser's ``Origin`` header of another site is refused (403) on every
  route, so no page can trigger ``/admin/reload`` or spend the model's time.
- **Staging versions** (they passed every gate; rejected ones are never served) answer only to their
  exact version name, never through the family name, which always means production: a client gets a
  staging version only by asking for it explicitly.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import secrets
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field

from tools.models.decoding import has_greedy_path
from tools.serving.batch import (
    Generation,
    GenerationResult,
    MicroBatcher,
    RowLimits,
    batch_key,
    cut_answer,
    left_pad,
)
from tools.serving.model_thread import ModelThread, on_model_thread

logger = logging.getLogger("ftagent.serving")
_STREAM_END = object()


class ServingError(Exception):
    """A request or a server setup the server refuses; maps to an OpenAI-style JSON error."""

    def __init__(self, status: int, message: str, code: str, param: str | None = None,
                 **extra: Any) -> None:
        super().__init__(message)
        self.status, self.message, self.code, self.param, self.extra = status, message, code, param, extra

    def body(self) -> dict[str, Any]:
        return {"error": {"message": self.message, "type": "invalid_request_error", "param": self.param,
                          "code": self.code, **self.extra}}


# -- request schema -------------------------------------------------------------------------------
class TextPart(BaseModel):
    type: Literal["text"]
    text: str


class ChatMessage(BaseModel):
    role: Literal["system", "user", "assistant"]
    content: str | list[TextPart]

    def text(self) -> str:
        if isinstance(self.content, str):
            return self.content
        return "".join(part.text for part in self.content)


class StreamOptions(BaseModel):
    include_usage: bool = False


class ChatCompletionRequest(BaseModel):
    """The subset of OpenAI's chat completion request this server honours; other fields are ignored."""

    model_config = ConfigDict(extra="ignore")

    model: str = Field(min_length=1)
    messages: list[ChatMessage] = Field(min_length=1)
    temperature: float = Field(1.0, ge=0.0, le=2.0)
    top_p: float = Field(1.0, gt=0.0, le=1.0)
    max_tokens: int | None = Field(None, ge=1)
    max_completion_tokens: int | None = Field(None, ge=1)
    n: int = Field(1, ge=1, le=1)
    stream: bool = False
    stream_options: StreamOptions | None = None
    seed: int | None = None
    user: str | None = None


# -- A/B splits -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class ABSplit:
    """A public name answered by several versions, each with a share of the traffic."""

    name: str
    arms: tuple[tuple[str, float], ...]

    def choose(self, request_id: str) -> str:
        """The arm for a request id: a stable hash mapped onto the cumulative weights."""
        digest = hashlib.sha256(f"{self.name}\0{request_id}".encode()).digest()
        point = int.from_bytes(digest[:8], "big") / 2**64 * sum(w for _, w in self.arms)
        for version, weight in self.arms:
            point -= weight
            if point < 0:
                return version
        return self.arms[-1][0]


# -- the model server -----------------------------------------------------------------------------
@dataclass(frozen=True)
class LoadedAdapter:
    adapter_id: str  # the peft adapter name (short and never reused: registry names may hold dots)
    path: str


@dataclass(frozen=True)
class MergedVersion:
    """The only served adapter, merged into its own copy of the base weights."""

    adapter: LoadedAdapter
    model: Any


@dataclass(frozen=True)
class Catalog:
    """The names a server answers, replaced whole so a request never sees half an update."""

    adapters: Mapping[str, LoadedAdapter]  # version name → its adapter on the shared model
    aliases: Mapping[str, str]
    splits: Mapping[str, ABSplit]
    system_prompts: Mapping[str, str]


@dataclass
class ServedNames:
    """What a server should answer: {version: adapter folder}, {alias: version}, {split: {version: weight}},
    {version: system prompt}."""

    adapters: dict[str, str] = field(default_factory=dict)
    aliases: dict[str, str] = field(default_factory=dict)
    splits: dict[str, dict[str, float]] = field(default_factory=dict)
    system_prompts: dict[str, str] = field(default_factory=dict)


class _EventStop:
    """A stopping criterion that ends generation when the client has gone away."""

    def __init__(self, event: threading.Event) -> None:
        self.event = event

    def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> bool:
        return self.event.is_set()


class ChatEngine:
    """What every engine behind the OpenAI-compatible app shares (ModelServer here, and
    tools.serving.llamacpp_engine): the names it answers (versions, aliases, A/B splits, each version's
    system prompt), changing them while it serves, and a request made into a Generation under the context
    policy. An engine puts adapters on and takes them off (`_load`, `_unload`), makes a prompt's token ids
    (`_prompt_ids`), generates (`generate(job, streamer, stop)`, feeding the streamer as transformers'
    generate does), and decodes answers with `tokenizer`."""

    tokenizer: Any
    batcher: MicroBatcher | None = None  # micro-batching of compatible requests, where the engine has it

    def __init__(self, base_name: str, context_length: int, default_max_tokens: int = 256,
                 assignment_log: Path | None = None) -> None:
        self.base_name = base_name
        self.context_length = context_length
        self.default_max_tokens = default_max_tokens
        self.assignment_log = assignment_log
        self._log_lock = threading.Lock()
        self._update_lock = threading.Lock()  # one change of names at a time
        self._adapter_count = 0
        self.catalog = Catalog({}, {}, {}, {})

    def close(self) -> None:
        """Stop the batching worker (queued requests still finish)."""
        if self.batcher is not None:
            self.batcher.close()

    # what an engine does with its model
    def _load(self, path: str) -> LoadedAdapter:
        raise NotImplementedError

    def _unload(self, adapters: Sequence[LoadedAdapter]) -> None:
        raise NotImplementedError

    def _catalog_changed(self, adapters: Mapping[str, LoadedAdapter]) -> None:
        """Called after the names were swapped, before the adapters no longer named are unloaded."""

    def _prompt_ids(self, messages: list[dict[str, str]]) -> Any:
        """The chat-templated prompt's token ids, shape (1, prompt tokens)."""
        raise NotImplementedError

    def generate(self, job: Generation, streamer: Any = None,
                 stop: threading.Event | None = None) -> GenerationResult:
        raise NotImplementedError

    def _holds(self, adapter_id: str) -> bool:
        """Whether the adapter is on the model now."""
        raise NotImplementedError

    def _next_adapter_id(self) -> str:
        """A short adapter id, never reused (registry names may hold dots, which peft refuses)."""
        self._adapter_count += 1
        return f"adapter{self._adapter_count}"

    # names
    def available(self) -> list[str]:
        catalog = self.catalog
        return [self.base_name, *catalog.adapters, *catalog.aliases, *catalog.splits]

    def kinds(self) -> dict[str, str]:
        """Each served name and what it is: base, adapter, alias or ab_split."""
        catalog = self.catalog
        return {self.base_name: "base", **{n: "adapter" for n in catalog.adapters},
                **{n: "alias" for n in catalog.aliases}, **{n: "ab_split" for n in catalog.splits}}

    def update(self, names: ServedNames, strict: bool = False) -> dict[str, Any]:
        """Serve exactly these names from now on: load new adapters, swap the names in one step, then
        unload the adapters no longer named. With `strict` (start-up) a bad adapter, alias or split
        raises; otherwise (hot reload) it is skipped with its reason logged and returned."""
        with self._update_lock:
            return self._update(names, strict)

    def _update(self, names: ServedNames, strict: bool) -> dict[str, Any]:
        old = self.catalog
        adapters, skipped = self._load_adapters(names.adapters, old, strict)
        versions = {self.base_name, *adapters}
        aliases, splits, dropped = _names_for(versions, names, strict)
        self.catalog = Catalog(adapters, aliases, splits,
                               {n: p for n, p in names.system_prompts.items() if n in versions})
        gone = [loaded for name, loaded in old.adapters.items() if adapters.get(name) != loaded]
        self._catalog_changed(adapters)
        self._unload(gone)
        report = {"loaded": sorted(n for n in adapters if old.adapters.get(n) != adapters[n]),
                  "unloaded": sorted(n for n, loaded in old.adapters.items() if adapters.get(n) != loaded),
                  "skipped": {**skipped, **dropped}, "models": self.available()}
        if report["loaded"] or report["unloaded"] or old.aliases != aliases or old.splits != splits:
            logger.info("serving update %s", json.dumps(report))
        return report

    def _load_adapters(self, wanted: Mapping[str, str], old: Catalog,
                       strict: bool) -> tuple[dict[str, LoadedAdapter], dict[str, str]]:
        adapters, skipped = {}, {}
        for name, path in wanted.items():
            if name == self.base_name:
                problem = f"{name} is the base model's name"
            elif old.adapters.get(name, LoadedAdapter("", "")).path == str(path):
                adapters[name] = old.adapters[name]
                continue
            else:
                try:
                    adapters[name] = self._load(str(path))
                    continue
                except Exception as error:  # noqa: BLE001 - a bad folder: skipped with its reason, or raised
                    problem = f"cannot load the adapter at {path}: {error}"
            if strict:
                raise ServingError(500, f"{name}: {problem}", "adapter_missing")
            logger.warning("not serving %s: %s", name, problem)
            skipped[name] = problem
        return adapters, skipped

    # requests
    def resolve(self, name: str, request_id: str | None) -> str:
        """The version that answers a requested name (an A/B split picks one and logs it)."""
        catalog = self.catalog
        if name in catalog.splits:
            rid = request_id or uuid.uuid4().hex
            version = catalog.splits[name].choose(rid)
            self._log_assignment(name, rid, version, generated_id=request_id is None)
            return version
        if name in catalog.aliases:
            return catalog.aliases[name]
        if name == self.base_name or name in catalog.adapters:
            return name
        available = self.available()
        raise ServingError(404, f"model {name!r} is not served here; available: {', '.join(available)}",
                           "model_not_found", "model", available=available)

    def _log_assignment(self, split: str, request_id: str, version: str, generated_id: bool) -> None:
        record = {"time": time.time(), "split": split, "request_id": request_id, "version": version,
                  "request_id_generated": generated_id}
        logger.info("ab_assignment %s", json.dumps(record))
        if self.assignment_log is not None:
            with self._log_lock, self.assignment_log.open("a", encoding="utf-8") as log:
                log.write(json.dumps(record) + "\n")

    def prepare(self, request: ChatCompletionRequest, request_id: str | None) -> Generation:
        """Resolve the model, build the prompt, and enforce the context policy."""
        catalog = self.catalog
        served = self.resolve(request.model, request_id)
        messages = [{"role": m.role, "content": m.text()} for m in request.messages]
        if served in catalog.system_prompts and not any(m["role"] == "system" for m in messages):
            messages.insert(0, {"role": "system", "content": catalog.system_prompts[served]})
        input_ids = self._prompt_ids(messages)
        room = self.context_length - int(input_ids.shape[1])
        if room <= 0:
            raise ServingError(400, f"the prompt is {input_ids.shape[1]} tokens but {request.model!r} has a "
                                    f"context of {self.context_length} tokens; shorten the messages",
                               "context_length_exceeded", "messages")
        wanted = request.max_completion_tokens or request.max_tokens or self.default_max_tokens
        adapter = catalog.adapters[served].adapter_id if served in catalog.adapters else None
        return Generation(served, adapter, input_ids, min(wanted, room), request.temperature, request.top_p,
                          request.seed, stream=request.stream)

    async def complete(self, job: Generation) -> GenerationResult:
        """A non-streamed answer: through the micro-batcher when the job can share a call, else alone."""
        import asyncio

        from starlette.concurrency import run_in_threadpool

        if self.batcher is not None and batch_key(job) is not None:
            return await asyncio.wrap_future(self.batcher.submit(job))
        return await run_in_threadpool(self.generate, job)

    def _check_still_served(self, job: Generation) -> None:
        """Called under the lock: the job's adapter may have been unloaded while the job waited."""
        if job.adapter is not None and not self._holds(job.adapter):
            available = self.available()
            raise ServingError(404, f"model {job.served_name!r} stopped being served while the request waited; "
                                    f"available: {', '.join(available)}", "model_not_found", "model",
                               available=available)

    def _result(self, job: Generation, new_tokens: list[int]) -> GenerationResult:
        tokens, ended = cut_answer(new_tokens, job.max_new_tokens, self.tokenizer.eos_token_id)
        return GenerationResult(
            text=self.tokenizer.decode(tokens, skip_special_tokens=True), prompt_tokens=job.prompt_tokens,
            completion_tokens=len(tokens),
            finish_reason="stop" if ended or len(tokens) < job.max_new_tokens else "length")


class ModelServer(ChatEngine):
    """One base model with LoRA adapters, and the name → version → adapter mapping."""

    def __init__(self, base_model_path: str, adapters: Mapping[str, str], base_name: str | None = None,
                 aliases: Mapping[str, str] | None = None, ab_splits: Mapping[str, Mapping[str, float]] | None = None,
                 system_prompts: Mapping[str, str] | None = None, context_length: int | None = None,
                 default_max_tokens: int = 256, assignment_log: Path | None = None,
                 threads: int | None = None, max_batch_size: int = 8, batch_window_ms: float = 10.0,
                 precision: str = "auto", merge_single_adapter: bool = True) -> None:
        from tools.models.loading import QUANTIZED, load_for_inference

        self.base_model_path, self.precision = str(base_model_path), precision
        self.model_thread = ModelThread()  # every call that touches the model runs there (see its module)
        shared = "fp32" if precision in QUANTIZED else precision  # peft's LoRA layers need float weights
        self.model, self.tokenizer = self.model_thread.run(load_for_inference, str(base_model_path), None, threads,
                                                           shared)
        self.merge_single_adapter = merge_single_adapter
        self.merged: MergedVersion | None = None  # the one served adapter merged into a copy of the weights
        super().__init__(base_name or Path(str(base_model_path).rstrip("/")).name,
                         context_length or int(getattr(self.model.config, "max_position_embeddings", 2048)),
                         default_max_tokens, assignment_log)
        self._lock = threading.Lock()  # the model: generation, loading and unloading adapters
        names = ServedNames(dict(adapters), dict(aliases or {}),
                            {name: dict(arms) for name, arms in (ab_splits or {}).items()}, dict(system_prompts or {}))
        self.update(names, strict=True)
        self.batcher = (MicroBatcher(self.generate_batch, self.context_length, max_batch_size, batch_window_ms / 1000)
                        if max_batch_size > 1 else None)

    @on_model_thread
    def _catalog_changed(self, adapters: Mapping[str, LoadedAdapter]) -> None:
        """Keep a merged copy of the weights for the only served adapter; none when zero or several are."""
        from tools.models.loading import load_for_inference

        only = next(iter(adapters.values())) if len(adapters) == 1 and self.merge_single_adapter else None
        current = self.merged
        if only is None or current is None or current.adapter != only:
            merged = (MergedVersion(only, load_for_inference(self.base_model_path, only.path,
                                                             precision=self.precision, merge=True)[0])
                      if only is not None else None)
            with self._lock:
                self.merged = merged

    @on_model_thread
    def _load(self, path: str) -> LoadedAdapter:
        """Put one adapter on the shared model (the first one wraps the base in a PeftModel)."""
        from peft import PeftModel

        if not (Path(path) / "adapter_config.json").exists():
            raise ValueError(f"no LoRA adapter (adapter_config.json) in {path}")
        loaded = LoadedAdapter(self._next_adapter_id(), path)
        with self._lock:
            if not isinstance(self.model, PeftModel):
                self.model = PeftModel.from_pretrained(self.model, path, adapter_name=loaded.adapter_id).eval()
                return loaded
            try:
                self.model.load_adapter(path, adapter_name=loaded.adapter_id)
            except Exception:
                if loaded.adapter_id in self.model.peft_config:  # half loaded: take its layers out again
                    self.model.delete_adapter(loaded.adapter_id)
                raise
            self.model.eval()
        return loaded

    @on_model_thread
    def _unload(self, adapters: Sequence[LoadedAdapter]) -> None:
        """Remove adapters from the model; without any left, the plain base model comes back."""
        if not adapters:
            return
        with self._lock:
            remaining = [a for a in self.model.peft_config if a not in {x.adapter_id for x in adapters}]
            if not remaining:
                self.model = self.model.unload()
                return
            self.model.set_adapter(remaining[0])  # peft warns when the active adapter is deleted
            for adapter in adapters:
                self.model.delete_adapter(adapter.adapter_id)

    def close(self) -> None:
        super().close()
        self.model_thread.close()

    def _prompt_ids(self, messages: list[dict[str, str]]) -> Any:
        prompt = self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        return self.tokenizer(prompt, return_tensors="pt", add_special_tokens=False)["input_ids"]

    @on_model_thread
    def generate(self, job: Generation, streamer: Any = None,
                 stop: threading.Event | None = None) -> GenerationResult:
        """Run one generation under the lock with the job's adapter selected."""
        with self._lock:
            self._check_still_served(job)
            return self._decode_alone(job, streamer, stop)

    @on_model_thread
    def generate_batch(self, jobs: list[Generation]) -> list[GenerationResult | Exception]:
        """Decode compatible jobs (same batch_key) in one call under the lock; a job whose version was
        withdrawn while it waited gets its 404 instead."""
        with self._lock:
            outcomes: dict[int, GenerationResult | Exception] = {}
            for index, job in enumerate(jobs):
                try:
                    self._check_still_served(job)
                except ServingError as withdrawn:
                    outcomes[index] = withdrawn
            live = [index for index in range(len(jobs)) if index not in outcomes]
            rows = [jobs[index] for index in live]
            decoded = [self._decode_alone(rows[0])] if len(rows) == 1 else self._decode_together(rows)
            outcomes.update(zip(live, decoded, strict=True))
        return [outcomes[index] for index in range(len(jobs))]

    def _decode_alone(self, job: Generation, streamer: Any = None,
                      stop: threading.Event | None = None) -> GenerationResult:
        """One unpadded row with the job's adapter selected (the caller holds the lock)."""
        import torch
        from transformers import StoppingCriteriaList

        options = self._decoding_options(job, job.max_new_tokens)
        options["streamer"] = streamer
        if stop is not None:
            options["stopping_criteria"] = StoppingCriteriaList([_EventStop(stop)])
        merged = self._merged_for([job])
        if has_greedy_path(merged) and job.temperature == 0:
            return self._result(job, self._greedy(merged, job.input_ids, None, job.max_new_tokens, stop, streamer)[0])
        with self._adapter(job.adapter) if merged is None else contextlib.nullcontext(), torch.inference_mode():
            if job.seed is not None:
                torch.manual_seed(job.seed)
            output = (merged or self.model).generate(input_ids=job.input_ids,
                                                     attention_mask=torch.ones_like(job.input_ids), **options)
        return self._result(job, output[0, job.prompt_tokens:].tolist())

    def _decode_together(self, rows: list[Generation]) -> list[GenerationResult]:
        """Rows in one left-padded call, each with its own adapter (peft's adapter_names, "__base__" for
        the base) and its own token limit (the caller holds the lock)."""
        import torch
        from transformers import StoppingCriteriaList

        if not rows:
            return []
        input_ids, mask = left_pad(rows, self.tokenizer.pad_token_id)
        width = input_ids.shape[1]
        options = self._decoding_options(rows[0], max(job.max_new_tokens for job in rows))
        options["stopping_criteria"] = StoppingCriteriaList([RowLimits(width, [job.max_new_tokens for job in rows])])
        merged = self._merged_for(rows)
        if has_greedy_path(merged) and all(job.temperature == 0 for job in rows):
            limit = max(job.max_new_tokens for job in rows)
            decoded = self._greedy(merged, input_ids, mask, limit, None)
            return [self._result(job, tokens) for job, tokens in zip(rows, decoded, strict=True)]
        if merged is None and self._has_adapters():
            options["adapter_names"] = [job.adapter or "__base__" for job in rows]
        with torch.inference_mode():
            output = (merged or self.model).generate(input_ids=input_ids, attention_mask=mask, **options)
        return [self._result(job, output[row, width:].tolist()) for row, job in enumerate(rows)]

    def _greedy(self, model: Any, input_ids: Any, mask: Any, max_new_tokens: int,
                stop: threading.Event | None, streamer: Any = None) -> list[list[int]]:
        """Greedy rows through `greedy_decode` (a model with `has_greedy_path`; the caller holds the lock).
        A streamer (one row) is fed as `generate` feeds it: the prompt, each new token, then the end."""
        from tools.models.decoding import greedy_decode

        if streamer is not None:
            streamer.put(input_ids)
        try:
            tokens = greedy_decode(model, input_ids, mask, max_new_tokens, self.tokenizer.eos_token_id,
                                   self.tokenizer.pad_token_id, should_stop=stop.is_set if stop else None,
                                   on_token=(lambda token: streamer.put(input_ids.new_tensor([token])))
                                   if streamer is not None else None)
        finally:
            if streamer is not None:
                streamer.end()
        return tokens.tolist()

    def _decoding_options(self, job: Generation, max_new_tokens: int) -> dict[str, Any]:
        options: dict[str, Any] = {"max_new_tokens": max_new_tokens, "do_sample": job.temperature > 0,
                                   "pad_token_id": self.tokenizer.pad_token_id,
                                   "eos_token_id": self.tokenizer.eos_token_id}
        if job.temperature > 0:
            options.update(temperature=job.temperature, top_p=job.top_p, top_k=0)
        return options

    def _merged_for(self, rows: Sequence[Generation]) -> Any:
        """The merged copy of the weights when every row asks for the adapter it holds, else None."""
        merged = self.merged
        if merged is not None and all(job.adapter == merged.adapter.adapter_id for job in rows):
            return merged.model
        return None

    def _has_adapters(self) -> bool:
        return hasattr(self.model, "peft_config")

    def _holds(self, adapter_id: str) -> bool:
        return adapter_id in getattr(self.model, "peft_config", {})

    def _adapter(self, adapter: str | None) -> contextlib.AbstractContextManager:
        if not self._has_adapters():
            return contextlib.nullcontext()
        if adapter is None:
            return self.model.disable_adapter()
        self.model.set_adapter(adapter)
        return contextlib.nullcontext()


def _names_for(versions: set[str], names: ServedNames,
               strict: bool) -> tuple[dict[str, str], dict[str, ABSplit], dict[str, str]]:
    """The aliases and splits that point to served versions. An alias or a split arm whose version is
    not served is dropped with its reason (a split keeps its other arms), or raises when `strict`.
    A split shadows an alias of the same name (the split is the explicit instruction)."""
    dropped: dict[str, str] = {}

    def refuse(name: str, problem: str, code: str) -> None:
        if strict:
            raise ServingError(500, f"{name!r}: {problem}", code)
        logger.warning("serving %s: %s", name, problem)
        dropped[name] = problem

    splits: dict[str, ABSplit] = {}
    for name, arms in names.splits.items():
        served = tuple((version, float(weight)) for version, weight in arms.items() if version in versions)
        missing = sorted(set(arms) - versions)
        if name in versions:
            refuse(name, "an A/B split cannot reuse a version's name", "bad_split")
        elif len(arms) < 2 or any(weight <= 0 for weight in arms.values()):
            refuse(name, "an A/B split needs two or more versions with positive weights", "bad_split")
        elif missing and (strict or not served):
            refuse(name, f"A/B split arms {missing} are not served", "bad_split")
        else:
            if missing:  # only when not strict: the split goes on with the arms it still has
                refuse(name, f"arms {missing} are no longer served; the split keeps {[v for v, _ in served]}",
                       "bad_split")
            splits[name] = ABSplit(name, served)
    aliases: dict[str, str] = {}
    for alias, target in names.aliases.items():
        if alias in splits:
            continue
        if alias in versions:
            refuse(alias, "an alias cannot reuse a version's name", "bad_alias")
        elif target not in versions:
            refuse(alias, f"alias points to {target!r}, which is not served", "bad_alias")
        else:
            aliases[alias] = target
    return aliases, splits, dropped


# -- HTTP -----------------------------------------------------------------------------------------
def _completion_body(request_id: str, job: Generation, result: GenerationResult) -> dict[str, Any]:
    return {"id": request_id, "object": "chat.completion", "created": int(time.time()), "model": job.served_name,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": result.text},
                         "finish_reason": result.finish_reason, "logprobs": None}],
            "usage": _usage(result)}


def _usage(result: GenerationResult) -> dict[str, int]:
    return {"prompt_tokens": result.prompt_tokens, "completion_tokens": result.completion_tokens,
            "total_tokens": result.prompt_tokens + result.completion_tokens}


def _chunk(request_id: str, model: str, delta: dict[str, Any], finish_reason: str | None = None,
           usage: dict[str, int] | None = None) -> str:
    body: dict[str, Any] = {"id": request_id, "object": "chat.completion.chunk", "created": int(time.time()),
                            "model": model,
                            "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason}]}
    if usage is not None:
        body["choices"], body["usage"] = [], usage
    return f"data: {json.dumps(body)}\n\n"


async def _stream_events(server: ChatEngine, job: Generation, request_id: str,
                         include_usage: bool) -> AsyncIterator[str]:
    """SSE chunks while a background thread generates; the client going away stops generation."""
    import anyio
    from transformers import TextIteratorStreamer

    streamer = TextIteratorStreamer(server.tokenizer, skip_prompt=True, skip_special_tokens=True)
    stop, outcome = threading.Event(), {}

    def run() -> None:
        try:
            outcome["result"] = server.generate(job, streamer, stop)
        except Exception as error:  # noqa: BLE001 - reported to the client as an error event below
            outcome["error"] = error
            streamer.end()

    thread = threading.Thread(target=run, name=f"generate-{request_id}", daemon=True)
    thread.start()
    try:
        yield _chunk(request_id, job.served_name, {"role": "assistant", "content": ""})
        pieces: Iterator[str] = iter(streamer)
        while (piece := await anyio.to_thread.run_sync(next, pieces, _STREAM_END)) is not _STREAM_END:
            if piece:
                yield _chunk(request_id, job.served_name, {"content": piece})
        await anyio.to_thread.run_sync(thread.join)
        if "error" in outcome:
            logger.error("generation failed for %s: %r", request_id, outcome["error"])
            error = {"message": f"generation failed: {outcome['error']}", "type": "server_error"}
            yield f"data: {json.dumps({'error': error})}\n\n"
        else:
            result: GenerationResult = outcome["result"]
            yield _chunk(request_id, job.served_name, {}, result.finish_reason)
            if include_usage:
                yield _chunk(request_id, job.served_name, {}, usage=_usage(result))
        yield "data: [DONE]\n\n"
    finally:
        stop.set()


def _field_name(location: Sequence[Any]) -> str:
    return ".".join(str(part) for part in location if part != "body") or "body"


def _validation_response(_: Request, error: RequestValidationError) -> JSONResponse:
    problems = error.errors()
    fields = [_field_name(p.get("loc", ())) for p in problems]
    message = "; ".join(f"{f}: {p.get('msg', 'invalid')}" for f, p in zip(fields, problems, strict=True))
    failure = ServingError(422, message or "invalid request", "invalid_request", fields[0] if fields else None)
    return JSONResponse(failure.body(), status_code=422)


def _serving_error_response(_: Request, error: ServingError) -> JSONResponse:
    return JSONResponse(error.body(), status_code=error.status)


LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})


def is_loopback(host: str) -> bool:
    return host.strip("[]") in LOOPBACK_HOSTS or host.startswith("127.")


def _host_name(value: str) -> str:
    """The host part of a Host header or an Origin (no scheme, no port), lower case."""
    value = value.split("://", 1)[-1].split("/", 1)[0].lower()
    if value.startswith("["):
        return value[1:value.find("]")] if "]" in value else value
    return value.rsplit(":", 1)[0] if value.count(":") == 1 else value


class ServingGuard:
    """ASGI middleware for the policy "who may call" (see the module docstring). Reads the key and the
    bound host from `app.state` (`api_key`, `bound_host`), so they can be set after the app is built."""

    def __init__(self, app: Any, state: Any) -> None:
        self.app, self.state = app, state

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        problem = self._problem(scope) if scope["type"] == "http" else None
        if problem is None:
            await self.app(scope, receive, send)
            return
        status, message, code = problem
        await JSONResponse({"error": {"message": message, "type": "invalid_request_error", "code": code}},
                           status_code=status, headers={"WWW-Authenticate": "Bearer"} if status == 401 else None
                           )(scope, receive, send)

    def _problem(self, scope: Any) -> tuple[int, str, str] | None:
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers") or []}
        bound = getattr(self.state, "bound_host", None)
        host = _host_name(headers.get("host", ""))
        if bound and is_loopback(bound) and not is_loopback(host):
            return 403, f"this server answers only requests for a loopback host, not {host!r}", "bad_host"
        origin = headers.get("origin")
        if origin and scope.get("method") != "GET" and _host_name(origin) != host:
            return 403, "cross-site requests are refused (Origin is another site)", "bad_origin"
        key = getattr(self.state, "api_key", None)
        if key and scope["path"].startswith(("/v1/", "/admin/")):
            given = headers.get("authorization", "")
            if not secrets.compare_digest(given.encode("latin-1"), f"Bearer {key}".encode()):
                return 401, "missing or wrong API key: send 'Authorization: Bearer <key>'", "invalid_api_key"
        return None


def build_app(server: ChatEngine, reload: Callable[[], dict[str, Any]] | None = None,
              on_close: Sequence[Callable[[], None]] = (), api_key: str | None = None) -> FastAPI:
    """The FastAPI app around an already loaded engine (a ModelServer, or another ChatEngine). `reload`
    answers ``POST /admin/reload`` (re-read what to serve; without it that endpoint is a 404); `on_close`
    stops background work when the server shuts down (``close_app``); `api_key` guards /v1 and /admin (see
    the module's "who may call")."""
    app = FastAPI(title="ftagent serving", version="1")
    app.state.api_key = api_key
    app.state.bound_host = None  # set by serve_forever / serve_in_background
    app.add_middleware(ServingGuard, state=app.state)
    app.state.server = server
    app.state.on_close = [*on_close, server.close]
    app.add_exception_handler(RequestValidationError, _validation_response)
    app.add_exception_handler(ServingError, _serving_error_response)

    @app.get("/health")
    def health() -> dict[str, Any]:
        batching = ({"max_batch_size": server.batcher.max_batch_size,
                     "batch_sizes": dict(sorted(server.batcher.batch_sizes.items()))}
                    if server.batcher is not None else None)
        return {"status": "ok", "base_model": server.base_name, "models": server.available(),
                "context_length": server.context_length, "batching": batching}

    @app.get("/v1/models")
    def list_models() -> dict[str, Any]:
        created = int(time.time())
        return {"object": "list", "data": [{"id": name, "object": "model", "created": created,
                                            "owned_by": "ftagent", "kind": kind}
                                           for name, kind in server.kinds().items()]}

    @app.post("/v1/chat/completions", response_model=None)
    async def chat_completions(body: ChatCompletionRequest, request: Request) -> Any:
        caller_id = request.headers.get("x-request-id") or body.user
        job = server.prepare(body, caller_id)
        completion_id = f"chatcmpl-{uuid.uuid4().hex[:24]}"
        headers = {"X-Served-Model": job.served_name}
        if body.stream:
            include_usage = bool(body.stream_options and body.stream_options.include_usage)
            return StreamingResponse(_stream_events(server, job, completion_id, include_usage),
                                     media_type="text/event-stream", headers=headers)
        result = await server.complete(job)
        return JSONResponse(_completion_body(completion_id, job, result), headers=headers)

    @app.post("/admin/reload")
    async def reload_models() -> dict[str, Any]:
        from starlette.concurrency import run_in_threadpool

        if reload is None:
            raise ServingError(404, "this server serves a fixed set of models; it does not follow a registry",
                               "reload_unavailable")
        return await run_in_threadpool(reload)

    return app


def close_app(app: FastAPI) -> None:
    """Stop an app's background work (registry polling, the batching worker)."""
    for stop in getattr(app.state, "on_close", ()):
        stop()


def create_app(base_model_path: str, adapters: dict[str, str], api_key: str | None = None,
               **options: Any) -> FastAPI:
    """An OpenAI-compatible app serving a base model and LoRA adapters ({served name: adapter folder}).

    Options are ModelServer's: base_name, aliases, ab_splits ({name: {version: weight}}),
    system_prompts, context_length, default_max_tokens, assignment_log, threads, max_batch_size
    (1 = no batching), batch_window_ms, precision (auto, fp32, bf16, int8, int4), merge_single_adapter."""
    return build_app(ModelServer(base_model_path, adapters, **options), api_key=api_key)


# -- running ----------------------------------------------------------------------------------------
@contextlib.contextmanager
def serve_in_background(app: FastAPI, host: str = "127.0.0.1", port: int = 0) -> Iterator[str]:
    """Run the app with uvicorn in a thread (port 0 = a free port); yields its base URL ending in /v1."""
    import uvicorn

    app.state.bound_host = host
    server = uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, name="uvicorn", daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError(f"the server did not start on {host}:{port}")
        time.sleep(0.02)
    bound_port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://{host}:{bound_port}/v1"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        close_app(app)


def serve_forever(app: FastAPI, host: str = "127.0.0.1", port: int = 8000) -> None:
    """Run the app in the foreground until interrupted."""
    import uvicorn

    app.state.bound_host = host
    try:
        uvicorn.run(app, host=host, port=port, log_level="info")
    finally:
        close_app(app)
