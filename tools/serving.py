"""An OpenAI-compatible chat server: one base model in memory, LoRA adapters chosen per request.

Endpoints: ``GET /v1/models``, ``POST /v1/chat/completions`` (plain, or SSE with ``stream=true``
in OpenAI's chunk format ending with ``data: [DONE]``) and ``GET /health``.

Policies, decided here so every front door behaves the same:

- **Names.** Requests name models by registry name. The base model is served under its own name
  with every adapter disabled. An alias (a family name) points to one version; an A/B split
  points to several versions with weights.
- **One model, one lock.** All adapters live on one peft model; a request selects its adapter
  (``set_adapter``, or ``disable_adapter`` for the base) and generates while holding a lock, so
  concurrent requests are served one after another, never with each other's adapter.
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
- **System prompt.** A served name may carry the system prompt its adapter was trained with; it
  is prepended only when the request has no system message of its own.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import threading
import time
import uuid
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field

from tools.registry import ModelRegistry, ModelVersion

logger = logging.getLogger("ftagent.serving")
SERVABLE_STATUSES = ("production", "staging")
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
@dataclass
class Generation:
    """One prepared request: which version answers, with which adapter, and how to decode."""

    served_name: str
    adapter: str | None  # peft adapter name; None = the base model with adapters disabled
    input_ids: Any  # torch.LongTensor of shape (1, prompt_tokens)
    max_new_tokens: int
    temperature: float
    top_p: float
    seed: int | None

    @property
    def prompt_tokens(self) -> int:
        return int(self.input_ids.shape[1])


@dataclass
class GenerationResult:
    text: str
    prompt_tokens: int
    completion_tokens: int
    finish_reason: str


class _EventStop:
    """A stopping criterion that ends generation when the client has gone away."""

    def __init__(self, event: threading.Event) -> None:
        self.event = event

    def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> bool:
        return self.event.is_set()


class ModelServer:
    """One base model with LoRA adapters, and the name → version → adapter mapping."""

    def __init__(self, base_model_path: str, adapters: Mapping[str, str], base_name: str | None = None,
                 aliases: Mapping[str, str] | None = None, ab_splits: Mapping[str, Mapping[str, float]] | None = None,
                 system_prompts: Mapping[str, str] | None = None, context_length: int | None = None,
                 default_max_tokens: int = 256, assignment_log: Path | None = None,
                 threads: int | None = None) -> None:
        self.base_name = base_name or Path(str(base_model_path).rstrip("/")).name
        self.model, self.tokenizer, self._adapter_ids = _load_model(base_model_path, adapters, threads)
        self.context_length = context_length or int(getattr(self.model.config, "max_position_embeddings", 2048))
        self.default_max_tokens = default_max_tokens
        self.system_prompts = dict(system_prompts or {})
        self.assignment_log = assignment_log
        self._lock = threading.Lock()
        self._log_lock = threading.Lock()
        self.aliases = dict(aliases or {})
        self.splits = {name: ABSplit(name, tuple(arms.items())) for name, arms in (ab_splits or {}).items()}
        self._check_names()

    # names
    def versions(self) -> list[str]:
        """Names that are answered by exactly one set of weights: the base and each adapter."""
        return [self.base_name, *self._adapter_ids]

    def available(self) -> list[str]:
        return [*self.versions(), *self.aliases, *self.splits]

    def _check_names(self) -> None:
        versions = set(self.versions())
        for alias, target in self.aliases.items():
            if target not in versions:
                raise ServingError(500, f"alias {alias!r} points to {target!r}, which is not served", "bad_alias")
        for split in self.splits.values():
            unknown = [v for v, _ in split.arms if v not in versions]
            if unknown or len(split.arms) < 2 or any(w <= 0 for _, w in split.arms):
                raise ServingError(500, f"A/B split {split.name!r} needs two or more served versions with "
                                        f"positive weights (unknown: {unknown})", "bad_split")
        clashes = (set(self.aliases) | set(self.splits)) & versions
        if clashes:
            raise ServingError(500, f"names used twice: {sorted(clashes)}", "bad_alias")

    def resolve(self, name: str, request_id: str | None) -> str:
        """The version that answers a requested name (an A/B split picks one and logs it)."""
        if name in self.splits:
            rid = request_id or uuid.uuid4().hex
            version = self.splits[name].choose(rid)
            self._log_assignment(name, rid, version, generated_id=request_id is None)
            return version
        if name in self.aliases:
            return self.aliases[name]
        if name in self.versions():
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

    # requests
    def prepare(self, request: ChatCompletionRequest, request_id: str | None) -> Generation:
        """Resolve the model, build the prompt, and enforce the context policy."""
        served = self.resolve(request.model, request_id)
        messages = [{"role": m.role, "content": m.text()} for m in request.messages]
        if served in self.system_prompts and not any(m["role"] == "system" for m in messages):
            messages.insert(0, {"role": "system", "content": self.system_prompts[served]})
        prompt = self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        input_ids = self.tokenizer(prompt, return_tensors="pt", add_special_tokens=False)["input_ids"]
        room = self.context_length - int(input_ids.shape[1])
        if room <= 0:
            raise ServingError(400, f"the prompt is {input_ids.shape[1]} tokens but {request.model!r} has a "
                                    f"context of {self.context_length} tokens; shorten the messages",
                               "context_length_exceeded", "messages")
        wanted = request.max_completion_tokens or request.max_tokens or self.default_max_tokens
        return Generation(served, self._adapter_ids.get(served), input_ids, min(wanted, room),
                          request.temperature, request.top_p, request.seed)

    def generate(self, job: Generation, streamer: Any = None,
                 stop: threading.Event | None = None) -> GenerationResult:
        """Run one generation under the lock with the job's adapter selected."""
        import torch
        from transformers import StoppingCriteriaList

        options: dict[str, Any] = {"max_new_tokens": job.max_new_tokens, "do_sample": job.temperature > 0,
                                   "pad_token_id": self.tokenizer.pad_token_id,
                                   "eos_token_id": self.tokenizer.eos_token_id, "streamer": streamer}
        if job.temperature > 0:
            options.update(temperature=job.temperature, top_p=job.top_p, top_k=0)
        if stop is not None:
            options["stopping_criteria"] = StoppingCriteriaList([_EventStop(stop)])
        with self._lock, self._adapter(job.adapter), torch.inference_mode():
            if job.seed is not None:
                torch.manual_seed(job.seed)
            output = self.model.generate(input_ids=job.input_ids,
                                         attention_mask=torch.ones_like(job.input_ids), **options)
        new_tokens = output[0, job.prompt_tokens:].tolist()
        ended = bool(new_tokens) and new_tokens[-1] == self.tokenizer.eos_token_id
        return GenerationResult(
            text=self.tokenizer.decode(new_tokens, skip_special_tokens=True),
            prompt_tokens=job.prompt_tokens, completion_tokens=len(new_tokens),
            finish_reason="stop" if ended or len(new_tokens) < job.max_new_tokens else "length")

    def _adapter(self, adapter: str | None) -> contextlib.AbstractContextManager:
        if not self._adapter_ids:
            return contextlib.nullcontext()
        if adapter is None:
            return self.model.disable_adapter()
        self.model.set_adapter(adapter)
        return contextlib.nullcontext()


def _load_model(base_model_path: str, adapters: Mapping[str, str],
                threads: int | None) -> tuple[Any, Any, dict[str, str]]:
    """The base model with every adapter loaded on it; adapter ids are short internal names
    because peft adapter names become module keys (registry names may hold dots)."""
    from tools.evaluation import load_for_inference

    model, tokenizer = load_for_inference(str(base_model_path), None, threads)
    adapter_ids: dict[str, str] = {}
    for index, (name, path) in enumerate(adapters.items()):
        if not (Path(path) / "adapter_config.json").exists():
            raise ServingError(500, f"{name}: no LoRA adapter at {path}", "adapter_missing")
        adapter_ids[name] = f"adapter{index}"
        if index == 0:
            from peft import PeftModel

            model = PeftModel.from_pretrained(model, str(path), adapter_name=adapter_ids[name])
        else:
            model.load_adapter(str(path), adapter_name=adapter_ids[name])
    model.eval()
    return model, tokenizer, adapter_ids


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


async def _stream_events(server: ModelServer, job: Generation, request_id: str,
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


def build_app(server: ModelServer) -> FastAPI:
    """The FastAPI app around an already loaded ModelServer."""
    app = FastAPI(title="ftagent serving", version="1")
    app.state.server = server
    app.add_exception_handler(RequestValidationError, _validation_response)
    app.add_exception_handler(ServingError, _serving_error_response)

    @app.get("/health")
    def health() -> dict[str, Any]:
        return {"status": "ok", "base_model": server.base_name, "models": server.available(),
                "context_length": server.context_length}

    @app.get("/v1/models")
    def list_models() -> dict[str, Any]:
        created = int(time.time())
        kinds = {server.base_name: "base", **{n: "adapter" for n in server._adapter_ids},
                 **{n: "alias" for n in server.aliases}, **{n: "ab_split" for n in server.splits}}
        return {"object": "list", "data": [{"id": name, "object": "model", "created": created,
                                            "owned_by": "ftagent", "kind": kinds[name]}
                                           for name in server.available()]}

    @app.post("/v1/chat/completions", response_model=None)
    async def chat_completions(body: ChatCompletionRequest, request: Request) -> Any:
        from starlette.concurrency import run_in_threadpool

        caller_id = request.headers.get("x-request-id") or body.user
        job = server.prepare(body, caller_id)
        completion_id = f"chatcmpl-{uuid.uuid4().hex[:24]}"
        headers = {"X-Served-Model": job.served_name}
        if body.stream:
            include_usage = bool(body.stream_options and body.stream_options.include_usage)
            return StreamingResponse(_stream_events(server, job, completion_id, include_usage),
                                     media_type="text/event-stream", headers=headers)
        result = await run_in_threadpool(server.generate, job)
        return JSONResponse(_completion_body(completion_id, job, result), headers=headers)

    return app


def create_app(base_model_path: str, adapters: dict[str, str], **options: Any) -> FastAPI:
    """An OpenAI-compatible app serving a base model and LoRA adapters ({served name: adapter folder}).

    Options are ModelServer's: base_name, aliases, ab_splits ({name: {version: weight}}),
    system_prompts, context_length, default_max_tokens, assignment_log, threads."""
    return build_app(ModelServer(base_model_path, adapters, **options))


# -- the registry's models --------------------------------------------------------------------------
def servable_versions(registry: ModelRegistry, names: Sequence[str] = ()) -> list[ModelVersion]:
    """The versions to serve: the named ones (any status), else every production and staging version
    sharing one base model (that of the newest production version, else of the newest version)."""
    if names:
        chosen = [registry.get(name) for name in names]
        bases = {v.base_model_path for v in chosen}
        if len(bases) > 1:
            raise ServingError(400, "one server serves one base model; these versions use "
                                    + ", ".join(f"{v.name}: {v.base_model}" for v in chosen), "mixed_base_models")
        return chosen
    candidates = [v for v in registry.list() if v.status in SERVABLE_STATUSES]
    if not candidates:
        raise ServingError(404, "nothing to serve: no production or staging model is registered "
                                "(run a job, or name a model with --model)", "no_models")
    production = [v for v in candidates if v.status == "production"]
    base = (production or candidates)[-1].base_model_path
    skipped = [v.name for v in candidates if v.base_model_path != base]
    if skipped:
        logger.warning("not serving %s: they use another base model than %s", skipped, base)
    return [v for v in candidates if v.base_model_path == base]


def app_for_registry(registry: ModelRegistry, home: Path, names: Sequence[str] = (),
                     **options: Any) -> FastAPI:
    """Serve registered versions on their shared base; each family name is an alias of its
    production version, and each version answers with the system prompt it was trained with."""
    from tools.base_models import model_key, resolve_base_model
    from tools.prompts import render_prompt

    versions = servable_versions(registry, names)
    first = versions[0]
    base_path = first.base_model_path
    if not Path(base_path).exists():
        base_path = str(resolve_base_model(first.base_model, Path(home)))
    aliases = {v.family: v.name for v in versions if v.status == "production" and v.family != v.name}
    prompts = {v.name: render_prompt("system_subject_expert", subject=v.subject) for v in versions}
    options.setdefault("base_name", model_key(first.base_model))
    options.setdefault("assignment_log", Path(home) / "serving-assignments.jsonl")
    return create_app(base_path, {v.name: v.adapter_path for v in versions},
                      aliases={**aliases, **options.pop("aliases", {})},
                      system_prompts={**prompts, **options.pop("system_prompts", {})}, **options)


# -- running ----------------------------------------------------------------------------------------
@contextlib.contextmanager
def serve_in_background(app: FastAPI, host: str = "127.0.0.1", port: int = 0) -> Iterator[str]:
    """Run the app with uvicorn in a thread (port 0 = a free port); yields its base URL ending in /v1."""
    import uvicorn

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


def serve_forever(app: FastAPI, host: str = "127.0.0.1", port: int = 8000) -> None:
    """Run the app in the foreground until interrupted."""
    import uvicorn

    uvicorn.run(app, host=host, port=port, log_level="info")
