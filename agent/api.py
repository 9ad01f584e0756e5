"""The HTTP jobs API (FastAPI), a thin door over `JobService`: submit, status, events (SSE), cancel,
models, evaluations, feedback; a job's artefacts, model actions and the chat (agent/console_api.py).
Bearer-token auth on every /api route; OpenAPI docs at /docs; the web console (agent/console.py) at /.

Who is asking comes from the token alone: each user has their own (`ftagent token add NAME [--admin]`,
stored hashed in the home's database); the server's single token (`--token-file`, $FTAGENT_API_TOKEN or
<home>/api_token) is the admin's. An `X-Ftagent-User` header is ignored. A user sees, follows and
cancels only their own jobs (another user's answer 404, as a job that does not exist would); an admin
sees all. What a remote caller may put in a job (document roots, public URLs, gates) is agent/access.py.

Bounds: a request body over `max_request_bytes` (default 1 MB) is refused with 413 before it is parsed;
one evaluation runs at a time (429 while one does); feedback texts are capped. The event stream tails
events.jsonl from a byte offset, so a long job costs a follower only its new lines.
Jobs are run by the queue worker (started in the same process by `ftagent api`, or `ftagent worker`).
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import secrets
import threading
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, FastAPI, Header, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from sse_starlette.sse import EventSourceResponse
from starlette.concurrency import run_in_threadpool
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from agent.access import Refused, document_roots
from agent.clarify import clarifying_question
from agent.console import install_console
from agent.console_api import console_router
from agent.queue import is_finished
from agent.service import JobService, NotOwner
from agent.settings import Settings
from graphs.spec import RequestError
from tools.evaluation.scoring import QASetError
from tools.events import read_from
from tools.package_data import EVAL_SETS_DIR
from tools.private_files import write_private_text
from tools.stores.api_tokens import Caller, TokenStore
from tools.stores.feedback import (
    MAX_ANSWER_CHARS,
    MAX_CORRECTION_CHARS,
    MAX_QUESTION_CHARS,
    FeedbackError,
)
from tools.stores.job_store import UnknownJob
from tools.stores.model_registry import RegistryError, RegistryRefusal

PREFIX = "/api/v1/fine-tuning"
LEGACY_ADMIN = "admin"  # the user name of the server's single token
MAX_EVAL_EXAMPLES = 500
_EVENT_NUMBER = re.compile(r"[0-9]{1,12}")
log = logging.getLogger(__name__)


def _well_formed(value: Any, where: str = "body") -> Any:
    """`value` when every string in it (keys too, at any depth) is valid Unicode; a lone surrogate
    (JSON "\\ud800") cannot be stored or encoded, so it is refused here, naming the field."""
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError as error:
            raise ValueError(f"malformed text in {where}: {error.reason} at character {error.start}") from None
    elif isinstance(value, dict):
        for key, item in value.items():
            _well_formed(key, where)
            _well_formed(item, f"{where}.{key}")
    elif isinstance(value, list):
        for index, item in enumerate(value):
            _well_formed(item, f"{where}[{index}]")
    return value


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")

    @field_validator("*", mode="after")
    @classmethod
    def _valid_text(cls, value: Any, info: Any) -> Any:
        return _well_formed(value, info.field_name)


class JobRequest(_Body):
    """A fine-tuning request: one sentence, plus optional JobSpec options (base_model, docs_path, training…).
    `docs_path` must lie in a document root (GET /limits lists them)."""

    request: str = Field(min_length=1, max_length=4000, examples=["fine-tune SmolLM2 on quantum error correction"])
    options: dict[str, Any] = Field(default_factory=dict)


class FeedbackRequest(_Body):
    """A rating of one answer; a correction becomes a training example for the model's next version."""

    model: str = Field(max_length=200)
    question: str = Field(min_length=1, max_length=MAX_QUESTION_CHARS)
    answer: str = Field(max_length=MAX_ANSWER_CHARS)
    rating: Literal[-1, 0, 1]
    correction: str | None = Field(None, max_length=MAX_CORRECTION_CHARS)


class EvaluationRequest(_Body):
    """Evaluate a model (tuned vs its base) on question/answer pairs: either `examples` inline
    ({"question","answer"} or {"messages": [...]}) or `dataset_path`, a JSONL file that must lie inside the
    ftagent home (e.g. a job's dataset/test.jsonl) or tools/eval_sets/ (the API never reads other files).
    `model` is a registered model name or `base` (model folders are only for the CLI and Python API)."""

    model: str = Field(min_length=1, max_length=200, examples=["base"])
    dataset_path: str | None = None
    examples: list[dict[str, Any]] | None = Field(None, min_length=1, max_length=MAX_EVAL_EXAMPLES)
    limit: int | None = Field(None, ge=1, le=MAX_EVAL_EXAMPLES)
    generate_limit: int | None = Field(None, ge=0, le=100, description="answers generated per model")
    max_new_tokens: int | None = Field(None, ge=1, le=256)

    @model_validator(mode="after")
    def _one_source(self) -> EvaluationRequest:
        if (self.dataset_path is None) == (self.examples is None):
            raise ValueError("give exactly one of 'dataset_path' and 'examples'")
        return self


class ApiError(Exception):
    """An error answer: HTTP status, message, and extra fields for the JSON body."""

    def __init__(self, status: int, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.status, self.message, self.extra = status, message, extra


def resolve_token(settings: Settings, explicit: str | None = None) -> str:
    """The API token: explicit (--token-file), else the `api_token` setting ($FTAGENT_API_TOKEN or the
    config file), else `<home>/api_token` (created, mode 0600)."""
    if explicit or settings.api_token:
        return explicit or settings.api_token or ""
    path = settings.layout.api_token
    if not path.exists():
        write_private_text(path, secrets.token_urlsafe(32))  # 0600 from its first byte
    return path.read_text().strip()


_BEARER = HTTPBearer(auto_error=False)
BearerCredentials = Annotated[HTTPAuthorizationCredentials | None, Depends(_BEARER)]


def _auth(tokens: TokenStore, admin_token: str | None):
    """A dependency that names the caller from their bearer token (401 for a missing, wrong or revoked one)."""

    def check(request: Request, credentials: BearerCredentials) -> Caller:
        presented = credentials.credentials if credentials is not None else ""
        caller = None
        if presented and admin_token and secrets.compare_digest(
                presented.encode("utf-8", "surrogatepass"), admin_token.encode()):
            caller = Caller(LEGACY_ADMIN, admin=True)
        elif presented:
            caller = tokens.caller(presented)
        if caller is None:
            raise ApiError(401, "missing or wrong bearer token: send 'Authorization: Bearer <token>'")
        request.state.caller = caller
        return caller

    return check


def _caller(request: Request) -> Caller:
    return request.state.caller


CallerDep = Annotated[Caller, Depends(_caller)]


def _job_view(service: JobService, job_id: str) -> dict[str, Any]:
    status = service.status(job_id)
    return {**status, "links": {"self": f"{PREFIX}/jobs/{job_id}", "events": f"{PREFIX}/jobs/{job_id}/events",
                                "cancel": f"{PREFIX}/jobs/{job_id}/cancel"}}


def _event_number(last_event_id: str | None) -> int:
    """The Last-Event-ID header as an event number (0 when absent); 400 for anything but ASCII digits."""
    if last_event_id is None or last_event_id == "":
        return 0
    if not _EVENT_NUMBER.fullmatch(last_event_id):
        raise ApiError(400, "Last-Event-ID must be an event number (the id of the last event received)")
    return int(last_event_id)


def _jobs_router(service: JobService, poll_seconds: float) -> APIRouter:
    router = APIRouter(tags=["jobs"])

    @router.post("/jobs", status_code=201, summary="Start a fine-tuning job from one sentence")
    def create_job(body: JobRequest, caller: CallerDep) -> dict[str, Any]:
        record = service.submit(body.request, body.options, remote=caller)
        return {**_job_view(service, record.job_id), "understood": service.understood(record)}

    @router.get("/jobs", summary="Your jobs (an admin: all jobs), newest first")
    def list_jobs(caller: CallerDep) -> list[dict[str, Any]]:
        return [record.to_dict() for record in service.list_jobs(caller)]

    @router.get("/jobs/{job_id}", summary="A job's status, phase and latest training step")
    def get_job(job_id: str, caller: CallerDep) -> dict[str, Any]:
        service.job_for(job_id, caller)
        return _job_view(service, job_id)

    @router.post("/jobs/{job_id}/cancel", summary="Cancel one of your jobs")
    def cancel_job(job_id: str, caller: CallerDep) -> dict[str, Any]:
        service.job_for(job_id, caller)
        service.cancel(job_id, caller.user, admin=caller.admin)
        return _job_view(service, job_id)

    @router.get("/jobs/{job_id}/events", summary="Server-sent events: every phase change, decision and step")
    async def job_events(job_id: str, request: Request, caller: CallerDep, after: int = 0,
                         last_event_id: str | None = Header(default=None)) -> EventSourceResponse:
        await run_in_threadpool(service.job_for, job_id, caller)  # 404 before the stream starts
        start = max(after, _event_number(last_event_id))
        return EventSourceResponse(_event_stream(service, job_id, start, request, poll_seconds), ping=15)

    return router


async def _event_stream(service: JobService, job_id: str, after: int, request: Request,
                        poll_seconds: float) -> AsyncIterator[dict[str, str]]:
    """SSE messages (id = event number, event = kind) until the job ends or the client goes away; reads
    events.jsonl from where it stopped (a byte offset), never the whole file again."""
    path, offset, seq = service.settings.job_paths(job_id).events, 0, 0
    while True:
        record = await run_in_threadpool(service.jobs.get, job_id)
        events, offset = await run_in_threadpool(read_from, path, offset)
        for event in events:
            seq += 1
            if seq > after:
                yield {"id": str(seq), "event": str(event.get("kind")),
                       "data": json.dumps({**event, "seq": seq}, default=str)}
        if is_finished(record.status):
            yield {"event": "end", "data": json.dumps({"job_id": job_id, "status": record.status,
                                                       "outcome": record.outcome})}
            return
        if await request.is_disconnected():
            return
        await asyncio.sleep(poll_seconds)


def _models_router(service: JobService) -> APIRouter:
    router = APIRouter(tags=["models"])
    evaluation_slot = threading.BoundedSemaphore(1)  # each evaluation loads a model: one at a time

    @router.get("/models", summary="Registered model versions")
    def list_models() -> list[dict[str, Any]]:
        return [version.to_dict() for version in service.models()]

    @router.get("/models/{name}", summary="One model version with its model card")
    def get_model(name: str) -> dict[str, Any]:
        return {**service.model(name).to_dict(), "card": service.model_card(name)}

    @router.post("/evaluations", summary="Evaluate a model (tuned vs its base) on question/answer pairs")
    def create_evaluation(body: EvaluationRequest, caller: CallerDep) -> dict[str, Any]:
        """Runs synchronously (bounded by `limit` and `generate_limit`), one at a time (429 while another
        runs); returns the numbers and the report path."""
        path = _allowed_eval_path(service, body.dataset_path, caller) if body.dataset_path else None
        overrides = {k: v for k, v in {"generate_limit": body.generate_limit,
                                       "max_new_tokens": body.max_new_tokens}.items() if v is not None}
        if not evaluation_slot.acquire(blocking=False):
            raise ApiError(429, "an evaluation is already running on this server; try again when it ends")
        try:
            return service.evaluate(body.model, path, body.examples, body.limit or MAX_EVAL_EXAMPLES, overrides,
                                    allow_folders=False)
        except QASetError as error:
            raise ApiError(422, f"invalid evaluation set: {error}") from error
        finally:
            evaluation_slot.release()

    @router.post("/feedback", status_code=201, summary="Rate an answer; corrections train the next version")
    def create_feedback(body: FeedbackRequest, caller: CallerDep) -> dict[str, Any]:
        stored = service.feedback(body.model, body.question, body.answer, body.rating, body.correction,
                                  caller.user)
        return stored.to_dict()

    @router.get("/limits", tags=["jobs"], summary="What this server lets you ask for: document roots, sizes")
    def limits(caller: CallerDep) -> dict[str, Any]:
        return {"user": caller.user, "admin": caller.admin,
                "document_roots": [str(root) for root in document_roots(service.settings)],
                "max_request_bytes": service.settings.max_request_bytes,
                "max_download_mb": service.settings.max_download_mb}

    return router


def _allowed_eval_path(service: JobService, given: str, caller: Caller) -> Path:
    """The resolved path when the caller may read it (422 otherwise): tools/eval_sets/, a document
    root, or the folder of one of the caller's own jobs (an admin: anywhere in the home). A relative path
    is taken inside the home, as before (e.g. jobs/<id>/dataset/test.jsonl)."""
    home = service.settings.home.resolve()
    path = Path(given).expanduser()
    path = (path if path.is_absolute() else home / path).resolve()
    roots = [EVAL_SETS_DIR.resolve(), *document_roots(service.settings)]
    if caller.admin:
        roots.append(home)
    else:
        roots += [service.settings.job_paths(record.job_id).root.resolve() for record in service.list_jobs(caller)]
    if not any(path.is_relative_to(root) for root in roots):
        raise ApiError(422, "dataset_path must be inside tools/eval_sets/, a document root or one of your jobs' "
                            "folders (or send 'examples' inline)")
    return path


def _validation_message(error: RequestValidationError) -> str:
    first = error.errors()[0]
    where = ".".join(str(part) for part in first["loc"] if part != "body") or "body"
    return f"invalid request: field '{where}': {first['msg']}"


def _install_error_handlers(app: FastAPI) -> None:
    def reply(status: int, message: str, **extra: Any) -> JSONResponse:
        headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
        return JSONResponse({"error": message, **extra}, status_code=status, headers=headers)

    handlers: dict[type[Exception], Any] = {
        ApiError: lambda _, e: reply(e.status, e.message, **e.extra),
        RequestValidationError: lambda _, e: reply(422, _validation_message(e), detail=json.loads(
            json.dumps([{k: v for k, v in d.items() if k != "input"} for d in e.errors()], default=str))),
        RequestError: lambda _, e: reply(400, str(e), question=clarifying_question(e), understood=e.understood),
        UnknownJob: lambda _, e: reply(404, str(e)),
        RegistryError: lambda _, e: reply(404, str(e)),
        RegistryRefusal: lambda _, e: reply(409, str(e)),
        NotOwner: lambda _, e: reply(403, str(e)),
        FeedbackError: lambda _, e: reply(400, str(e)),
        Refused: lambda _, e: reply(e.status, str(e), **e.extra),
        UnicodeError: lambda _, e: reply(400, f"malformed text in the request: {e}"),
    }
    for kind, handler in handlers.items():
        app.add_exception_handler(kind, handler)

    @app.exception_handler(Exception)
    async def unexpected(_: Request, error: Exception) -> JSONResponse:
        log.exception("unexpected error in the API")
        return reply(500, f"internal error ({type(error).__name__}); the server log has the details")


class BodyLimit:
    """ASGI middleware: a request body over `limit` bytes gets 413, by its Content-Length at once or,
    without one, as soon as the streamed body passes the limit (nothing beyond it is read). The body is
    read here first (at most `limit` bytes) and handed on whole: FastAPI would turn an error raised while
    it reads the body into a 400."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app, self.limit = app, limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or []).get(b"content-length", b"")
        if declared.isdigit() and int(declared) > self.limit:
            await self._refuse(scope, send)
            return
        body, more = bytearray(), True
        while more:
            message = await receive()
            if message["type"] != "http.request":
                await self.app(scope, _replay([message]), send)  # the client went away
                return
            body += message.get("body", b"")
            more = message.get("more_body", False)
            if len(body) > self.limit:
                await self._refuse(scope, send)
                return
        await self.app(scope, _replay([{"type": "http.request", "body": bytes(body), "more_body": False}],
                                      receive), send)

    async def _refuse(self, scope: Scope, send: Send) -> None:
        reply = JSONResponse({"error": f"request body too large: at most {self.limit:,} bytes"}, status_code=413)
        await reply(scope, _replay([{"type": "http.request", "body": b"", "more_body": False}]), send)


def _replay(messages: list[Message], then: Receive | None = None) -> Receive:
    """A receive callable that hands out `messages`, then waits on `then` (a disconnect, later)."""
    queue = list(messages)

    async def receive() -> Message:
        if queue:
            return queue.pop(0)
        if then is not None:
            return await then()
        return {"type": "http.disconnect"}

    return receive


def create_app(service: JobService, token: str | None, poll_seconds: float = 0.25) -> FastAPI:
    """The API app over one service; every /api route needs `Authorization: Bearer <token>`: a user's own
    token (`ftagent token add`) or `token`, the server's admin token (None: user tokens only)."""
    app = FastAPI(title="ftagent fine-tuning API", version="1",
                  description="Fine-tune a language model from one sentence; follow the job; rate the results.")
    app.add_middleware(BodyLimit, limit=service.settings.max_request_bytes)
    auth = [Depends(_auth(TokenStore(service.settings.database), token))]
    app.include_router(_jobs_router(service, poll_seconds), prefix=PREFIX, dependencies=auth)
    app.include_router(_models_router(service), prefix=PREFIX, dependencies=auth)
    app.include_router(console_router(service), prefix=PREFIX, dependencies=auth)
    _install_error_handlers(app)
    install_console(app)

    @app.get("/healthz", tags=["health"])
    @app.get("/health", tags=["health"])  # the readiness path the deployment files probe (deploy/k8s)
    def health() -> dict[str, str]:
        return {"status": "ok"}

    return app


def serve(service: JobService, host: str = "127.0.0.1", port: int = 8321, token: str | None = None,
          with_worker: bool = True) -> None:
    """Run the API with uvicorn (and the queue worker in a thread of this process unless told not to)."""
    import uvicorn

    from agent.queue import Worker, WorkerBusy

    app = create_app(service, resolve_token(service.settings, token))
    worker = Worker(service) if with_worker else None
    if worker is not None:
        try:
            worker.start_thread()
        except WorkerBusy as busy:
            log.warning("%s; this API process only queues jobs", busy)
    try:
        uvicorn.run(app, host=host, port=port, log_level="warning")
    finally:
        if worker is not None:
            worker.stop()
