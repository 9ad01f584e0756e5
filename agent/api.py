"""The HTTP jobs API (FastAPI), a thin door over `JobService`: submit, status, events (SSE), cancel,
models, evaluations, feedback; a job's artefacts, model actions and the chat (agent/console_api.py).
Bearer-token auth on every /api route; OpenAPI docs at /docs; the web console (agent/console.py) at /.

Who is asking: the token proves the caller may use the API; the `X-Ftagent-User` header names the person
on whose behalf it calls (default "api"), and only that user may cancel the jobs they submitted.
Jobs are run by the queue worker (started in the same process by `ftagent api`, or `ftagent worker`).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import secrets
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, FastAPI, Header, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, ConfigDict, Field, model_validator
from sse_starlette.sse import EventSourceResponse
from starlette.concurrency import run_in_threadpool

from agent.clarify import clarifying_question
from agent.console import install_console
from agent.console_api import console_router
from agent.queue import is_finished
from agent.service import JobService, NotOwner
from graphs.spec import RequestError
from tools.evaluation import QASetError
from tools.feedback import FeedbackError
from tools.job_store import UnknownJob
from tools.registry import RegistryError, RegistryRefusal

PREFIX = "/api/v1/fine-tuning"
TOKEN_ENV = "FTAGENT_API_TOKEN"
USER_HEADER = "X-Ftagent-User"
EVAL_SETS = Path(__file__).resolve().parents[1] / "eval_sets"
MAX_EVAL_EXAMPLES = 500
log = logging.getLogger(__name__)


class JobRequest(BaseModel):
    """A fine-tuning request: one sentence, plus optional JobSpec options (base_model, docs_path, training…)."""

    model_config = ConfigDict(extra="forbid")
    request: str = Field(min_length=1, max_length=4000, examples=["fine-tune SmolLM2 on quantum error correction"])
    options: dict[str, Any] = Field(default_factory=dict)


class FeedbackRequest(BaseModel):
    """A rating of one answer; a correction becomes a training example for the model's next version."""

    model_config = ConfigDict(extra="forbid")
    model: str
    question: str = Field(min_length=1)
    answer: str
    rating: Literal[-1, 0, 1]
    correction: str | None = None


class EvaluationRequest(BaseModel):
    """Evaluate a model (tuned vs its base) on question/answer pairs: either `examples` inline
    ({"question","answer"} or {"messages": [...]}) or `dataset_path`, a JSONL file that must lie inside the
    ftagent home (e.g. a job's dataset/test.jsonl) or the repo's eval_sets/ (the API never reads other files).
    `model` is a registered model name or `base` (model folders are only for the CLI and Python API)."""

    model_config = ConfigDict(extra="forbid")
    model: str = Field(min_length=1, examples=["base"])
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


def resolve_token(home: Path, explicit: str | None = None) -> str:
    """The API token: explicit, else $FTAGENT_API_TOKEN, else `<home>/api_token` (created, mode 0600)."""
    if explicit or os.environ.get(TOKEN_ENV):
        return explicit or os.environ[TOKEN_ENV]
    path = Path(home) / "api_token"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(secrets.token_urlsafe(32))
        path.chmod(0o600)
    return path.read_text().strip()


_BEARER = HTTPBearer(auto_error=False)
BearerCredentials = Annotated[HTTPAuthorizationCredentials | None, Depends(_BEARER)]


def _auth(token: str):
    """A dependency that refuses requests without the right bearer token (401)."""

    def check(credentials: BearerCredentials) -> None:
        if credentials is None or not secrets.compare_digest(credentials.credentials.encode(), token.encode()):
            raise ApiError(401, "missing or wrong bearer token: send 'Authorization: Bearer <token>'")

    return check


def _user(x_ftagent_user: str | None = Header(default=None)) -> str:
    return x_ftagent_user or "api"


def _job_view(service: JobService, job_id: str) -> dict[str, Any]:
    status = service.status(job_id)
    return {**status, "links": {"self": f"{PREFIX}/jobs/{job_id}", "events": f"{PREFIX}/jobs/{job_id}/events",
                                "cancel": f"{PREFIX}/jobs/{job_id}/cancel"}}


def _jobs_router(service: JobService, poll_seconds: float) -> APIRouter:
    router = APIRouter(tags=["jobs"])

    @router.post("/jobs", status_code=201, summary="Start a fine-tuning job from one sentence")
    def create_job(body: JobRequest, user: str = Depends(_user)) -> dict[str, Any]:
        record = service.submit(body.request, body.options, owner=user)
        return _job_view(service, record.job_id)

    @router.get("/jobs", summary="All jobs, newest first")
    def list_jobs() -> list[dict[str, Any]]:
        return [record.to_dict() for record in service.list_jobs()]

    @router.get("/jobs/{job_id}", summary="A job's status, phase and latest training step")
    def get_job(job_id: str) -> dict[str, Any]:
        return _job_view(service, job_id)

    @router.post("/jobs/{job_id}/cancel", summary="Cancel a job (only its owner may)")
    def cancel_job(job_id: str, user: str = Depends(_user)) -> dict[str, Any]:
        service.cancel(job_id, user)
        return _job_view(service, job_id)

    @router.get("/jobs/{job_id}/events", summary="Server-sent events: every phase change, decision and step")
    async def job_events(job_id: str, request: Request, after: int = 0,
                         last_event_id: str | None = Header(default=None)) -> EventSourceResponse:
        await run_in_threadpool(service.jobs.get, job_id)  # 404 before the stream starts
        start = max(after, int(last_event_id) if (last_event_id or "").isdigit() else 0)
        return EventSourceResponse(_event_stream(service, job_id, start, request, poll_seconds), ping=15)

    return router


async def _event_stream(service: JobService, job_id: str, after: int, request: Request,
                        poll_seconds: float) -> AsyncIterator[dict[str, str]]:
    """SSE messages (id = event number, event = kind) until the job ends or the client goes away."""
    while True:
        record = await run_in_threadpool(service.jobs.get, job_id)
        for event in await run_in_threadpool(service.read_events, job_id, after):
            after = event["seq"]
            yield {"id": str(event["seq"]), "event": event["kind"], "data": json.dumps(event, default=str)}
        if is_finished(record.status):
            yield {"event": "end", "data": json.dumps({"job_id": job_id, "status": record.status,
                                                       "outcome": record.outcome})}
            return
        if await request.is_disconnected():
            return
        await asyncio.sleep(poll_seconds)


def _models_router(service: JobService) -> APIRouter:
    router = APIRouter(tags=["models"])

    @router.get("/models", summary="Registered model versions")
    def list_models() -> list[dict[str, Any]]:
        return [version.to_dict() for version in service.models()]

    @router.get("/models/{name}", summary="One model version with its model card")
    def get_model(name: str) -> dict[str, Any]:
        return {**service.model(name).to_dict(), "card": service.model_card(name)}

    @router.post("/evaluations", summary="Evaluate a model (tuned vs its base) on question/answer pairs")
    def create_evaluation(body: EvaluationRequest) -> dict[str, Any]:
        """Runs synchronously (bounded by `limit` and `generate_limit`); returns the numbers and the report path."""
        path = _allowed_eval_path(service, body.dataset_path) if body.dataset_path else None
        overrides = {k: v for k, v in {"generate_limit": body.generate_limit,
                                       "max_new_tokens": body.max_new_tokens}.items() if v is not None}
        try:
            return service.evaluate(body.model, path, body.examples, body.limit or MAX_EVAL_EXAMPLES, overrides,
                                    allow_folders=False)
        except QASetError as error:
            raise ApiError(422, f"invalid evaluation set: {error}") from error

    @router.post("/feedback", status_code=201, summary="Rate an answer; corrections train the next version")
    def create_feedback(body: FeedbackRequest, user: str = Depends(_user)) -> dict[str, Any]:
        stored = service.feedback(body.model, body.question, body.answer, body.rating, body.correction, user)
        return stored.to_dict()

    return router


def _allowed_eval_path(service: JobService, given: str) -> Path:
    """The resolved path when it lies inside the home or the repo's eval_sets/ (422 otherwise)."""
    path = Path(given).expanduser()
    path = (path if path.is_absolute() else service.settings.home / path).resolve()
    roots = (service.settings.home.resolve(), EVAL_SETS.resolve())
    if not any(path.is_relative_to(root) for root in roots):
        raise ApiError(422, f"dataset_path must be inside {roots[0]} or {roots[1]} (or send 'examples' inline)")
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
            json.dumps(e.errors(), default=str))),
        RequestError: lambda _, e: reply(400, str(e), question=clarifying_question(e), understood=e.understood),
        UnknownJob: lambda _, e: reply(404, str(e)),
        RegistryError: lambda _, e: reply(404, str(e)),
        RegistryRefusal: lambda _, e: reply(409, str(e)),
        NotOwner: lambda _, e: reply(403, str(e)),
        FeedbackError: lambda _, e: reply(400, str(e)),
    }
    for kind, handler in handlers.items():
        app.add_exception_handler(kind, handler)

    @app.exception_handler(Exception)
    async def unexpected(_: Request, error: Exception) -> JSONResponse:
        log.exception("unexpected error in the API")
        return reply(500, f"internal error ({type(error).__name__}); the server log has the details")


def create_app(service: JobService, token: str, poll_seconds: float = 0.25) -> FastAPI:
    """The API app over one service; every /api route needs `Authorization: Bearer <token>`."""
    app = FastAPI(title="ftagent fine-tuning API", version="1",
                  description="Fine-tune a language model from one sentence; follow the job; rate the results.")
    auth = [Depends(_auth(token))]
    app.include_router(_jobs_router(service, poll_seconds), prefix=PREFIX, dependencies=auth)
    app.include_router(_models_router(service), prefix=PREFIX, dependencies=auth)
    app.include_router(console_router(service, _user), prefix=PREFIX, dependencies=auth)
    _install_error_handlers(app)
    install_console(app)

    @app.get("/healthz", tags=["health"])
    def health() -> dict[str, str]:
        return {"status": "ok"}

    return app


def serve(service: JobService, host: str = "127.0.0.1", port: int = 8321, token: str | None = None,
          with_worker: bool = True) -> None:
    """Run the API with uvicorn (and the queue worker in a thread of this process unless told not to)."""
    import uvicorn

    from agent.queue import Worker, WorkerBusy

    app = create_app(service, resolve_token(service.settings.home, token))
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
