"""`ftagent mcp`: the agent over the Model Context Protocol (the official `mcp` SDK, 2.x), so another
agent can start and follow fine-tuning jobs, list, show and ask models, and cancel.

Every tool goes through the same JobService as the other doors. Jobs run in a queue worker thread of
this process (when no other worker holds the home; then they wait for that one). Over stdio the caller
is the local user (`--user`, default the OS user) and owns the jobs it starts; a failure comes back as
a tool error whose text says what was wrong (the same messages the CLI prints).

Over streamable HTTP (`ftagent mcp --http`) it is a remote door like the HTTP API: every request needs
`Authorization: Bearer <token>` (a user's token from `ftagent token add`, or the server's admin token),
the caller is the token's user, and the remote rules of agent/access.py apply (document roots, public
URLs, gates, base-model folders for admins only); a user sees and cancels only their own jobs."""

from __future__ import annotations

import getpass
import json
import secrets
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import partial, wraps
from typing import TYPE_CHECKING, Any

import anyio
from mcp.server.mcpserver import Context

from agent.service import JobService
from tools.stores.api_tokens import Caller, TokenStore

if TYPE_CHECKING:
    from mcp.server.mcpserver import MCPServer
    from starlette.types import ASGIApp, Receive, Scope, Send

CALLER_KEY = "ftagent_caller"  # where the token gate leaves the caller in the request's scope state
ADMIN_USER = "admin"  # the user name of the server's admin token (as for the HTTP API)

INSTRUCTIONS = ("Fine-tune small language models from one sentence. start_job takes a request such as "
                "'fine-tune SmolLM2 on soil science' and options (docs_path, dataset, base_model, training, "
                "gates, ...: the job spec); follow it with job_status and job_events; then list_models, "
                "show_model, ask_model.")
MAX_EVENTS = 200
TOOL_NAMES = ("start_job", "job_status", "job_events", "list_models", "show_model", "ask_model", "cancel_job")


def model_summary(version: Any) -> dict[str, Any]:
    return {"name": version.name, "status": version.status, "gates_passed": version.gates_passed,
            "base_model": version.base_model, "subject": version.subject, "created_at": version.created_at,
            "tuned": version.metrics.get("tuned"), "base": version.metrics.get("base")}


class AgentTools:
    """The MCP tools as plain methods over the service (tested directly and through the SDK).
    `remote`: the caller of the HTTP transport (None: the local user `user` over stdio)."""

    def __init__(self, service: JobService, user: str, remote: Caller | None = None) -> None:
        self.service = service
        self.user = remote.user if remote is not None else user
        self.remote = remote

    def start_job(self, sentence: str, options: dict[str, Any] | None = None) -> dict[str, Any]:
        """Validate and queue a fine-tuning job; returns its id (the worker starts it)."""
        if self.remote is not None:
            record = self.service.submit(sentence, options or {}, remote=self.remote)
        else:
            record = self.service.submit(sentence, options or {}, owner=self.user)
        return {"job_id": record.job_id, "status": record.status, "request": record.request}

    def job_status(self, job_id: str) -> dict[str, Any]:
        self.service.job_for(job_id, self.remote)  # someone else's job: as unknown as a missing one
        return {k: v for k, v in self.service.status(job_id).items() if v not in (None, "", {})}

    def job_events(self, job_id: str, after: int = 0) -> list[dict[str, Any]]:
        """Events after the first `after` (each has `seq`; pass the last one back to page on)."""
        self.service.job_for(job_id, self.remote)
        return self.service.read_events(job_id, after)[:MAX_EVENTS]

    def list_models(self) -> list[dict[str, Any]]:
        return [model_summary(version) for version in self.service.models()]

    def show_model(self, name: str) -> dict[str, Any]:
        return {**model_summary(self.service.model(name)), "card": self.service.model_card(name)}

    def ask_model(self, name: str, question: str, max_new_tokens: int = 128) -> str:
        return self.service.ask(name, question, max_new_tokens)

    def cancel_job(self, job_id: str) -> dict[str, Any]:
        if self.remote is not None:
            self.service.job_for(job_id, self.remote)
        record = self.service.cancel(job_id, self.user, admin=bool(self.remote and self.remote.admin))
        return {"job_id": record.job_id, "status": record.status, "cancel_requested": bool(record.cancel_requested)}


def said_clearly(method: Callable[..., Any]) -> Callable[..., Any]:
    """The caller's mistakes (a bad request, an unknown job or model, someone else's job) come back as
    a tool error with the same message the CLI prints; the SDK would hide any other exception's text."""
    from mcp.server.mcpserver.exceptions import ToolError

    from agent.access import Refused
    from agent.service import NotOwner
    from graphs.spec import RequestError
    from tools.models.catalogue import BaseModelError
    from tools.stores.job_store import UnknownJob
    from tools.stores.model_registry import RegistryError, RegistryRefusal

    @wraps(method)
    def checked(*args: Any, **kwargs: Any) -> Any:
        try:
            return method(*args, **kwargs)
        except (RequestError, UnknownJob, RegistryError, RegistryRefusal, NotOwner, BaseModelError,
                Refused) as error:
            raise ToolError(str(error)) from error

    return checked


def remote_caller(ctx: Context) -> Caller:
    """The caller the token gate found for this HTTP request (ToolError when there is none)."""
    from mcp.server.mcpserver.exceptions import ToolError

    request = ctx.request_context.request
    caller = (getattr(request, "scope", None) or {}).get("state", {}).get(CALLER_KEY)
    if not isinstance(caller, Caller):
        raise ToolError("no caller: send 'Authorization: Bearer <token>'")
    return caller


def build_mcp_server(service: JobService, user: str | None = None, remote: bool = False) -> MCPServer:
    """The MCPServer with one tool per AgentTools method; slow ones run in a worker thread. `remote`: each
    call acts for the caller the HTTP token gate found (else for the local `user`)."""
    from mcp.server.mcpserver import MCPServer

    local_user = user or getpass.getuser()

    def tools_for(ctx: Context) -> AgentTools:
        tools = AgentTools(service, local_user, remote_caller(ctx) if remote else None)
        for name in TOOL_NAMES:
            setattr(tools, name, said_clearly(getattr(tools, name)))
        return tools

    server = MCPServer("ftagent", instructions=INSTRUCTIONS)

    @server.tool(description="Start a fine-tuning job from one sentence, e.g. 'fine-tune SmolLM2 on soil "
                             "science'. options: the job spec (docs_path, dataset, base_model, training, "
                             "gates, ...). Returns the job id; the job runs in the background.")
    async def start_job(sentence: str, ctx: Context, options: dict[str, Any] | None = None) -> dict[str, Any]:
        return await anyio.to_thread.run_sync(partial(tools_for(ctx).start_job, sentence, options))

    @server.tool(description="A job's status, phase, last event and training step.")
    def job_status(job_id: str, ctx: Context) -> dict[str, Any]:
        return tools_for(ctx).job_status(job_id)

    @server.tool(description=f"A job's events after the first `after` (at most {MAX_EVENTS}).")
    def job_events(job_id: str, ctx: Context, after: int = 0) -> list[dict[str, Any]]:
        return tools_for(ctx).job_events(job_id, after)

    @server.tool(description="Registered model versions with their status, gates and metrics.")
    def list_models(ctx: Context) -> list[dict[str, Any]]:
        return tools_for(ctx).list_models()

    @server.tool(description="One registered model: status, metrics and its model card.")
    def show_model(name: str, ctx: Context) -> dict[str, Any]:
        return tools_for(ctx).show_model(name)

    @server.tool(description="Ask a registered model a question; returns its answer.")
    async def ask_model(name: str, question: str, ctx: Context, max_new_tokens: int = 128) -> str:
        return await anyio.to_thread.run_sync(partial(tools_for(ctx).ask_model, name, question, max_new_tokens))

    @server.tool(description="Cancel a job you started (a queued one at once, a running one at its next step).")
    def cancel_job(job_id: str, ctx: Context) -> dict[str, Any]:
        return tools_for(ctx).cancel_job(job_id)

    return server


class TokenGate:
    """ASGI middleware in front of the streamable-HTTP app: a request without a valid bearer token gets
    401 (JSON, naming what to send); a valid one carries its Caller in the scope's state. A user's token
    (`ftagent token add`, stored hashed) names that user; the admin token names the admin."""

    def __init__(self, app: ASGIApp, tokens: TokenStore, admin_token: str | None) -> None:
        self.app, self.tokens, self.admin_token = app, tokens, admin_token

    def caller(self, authorization: str) -> Caller | None:
        scheme, _, presented = authorization.partition(" ")
        presented = presented.strip()
        if scheme.lower() != "bearer" or not presented:
            return None
        if self.admin_token and secrets.compare_digest(presented.encode("utf-8", "surrogateescape"),
                                                       self.admin_token.encode()):
            return Caller(ADMIN_USER, admin=True)
        return self.tokens.caller(presented)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":  # lifespan: the session manager's start and stop
            await self.app(scope, receive, send)
            return
        headers = {key.lower(): value for key, value in scope.get("headers") or []}
        authorization = headers.get(b"authorization", b"").decode("latin-1")
        caller = await anyio.to_thread.run_sync(self.caller, authorization)
        if caller is None:
            body = json.dumps({"error": "missing or wrong bearer token: send 'Authorization: Bearer <token>' "
                                        "(ftagent token add NAME makes one)"}).encode()
            await send({"type": "http.response.start", "status": 401,
                        "headers": [(b"content-type", b"application/json"), (b"www-authenticate", b"Bearer"),
                                    (b"content-length", str(len(body)).encode())]})
            await send({"type": "http.response.body", "body": body})
            return
        scope.setdefault("state", {})[CALLER_KEY] = caller
        await self.app(scope, receive, send)


def http_app(service: JobService, admin_token: str | None, host: str = "127.0.0.1") -> ASGIApp:
    """The streamable-HTTP MCP app at /mcp behind the token gate (DNS-rebinding protection on loopback)."""
    server = build_mcp_server(service, remote=True)
    app = server.streamable_http_app(host=host)
    return TokenGate(app, TokenStore(service.settings.database), admin_token)


def serve_http(service: JobService, host: str, port: int, admin_token: str | None,
               with_worker: bool = True) -> None:
    """Serve MCP over streamable HTTP at http://host:port/mcp until stopped, with a queue worker thread."""
    import uvicorn

    with running_worker(service, with_worker):
        uvicorn.run(http_app(service, admin_token, host), host=host, port=port, log_level="warning")


@contextmanager
def running_worker(service: JobService, wanted: bool) -> Iterator[None]:
    """A queue worker thread for the server's lifetime (none when not wanted or another worker holds
    the home: then that one runs the jobs)."""
    from agent.queue import Worker, WorkerBusy

    worker = Worker(service) if wanted else None
    if worker is not None:
        try:
            worker.start_thread()
        except WorkerBusy:
            worker = None  # another worker runs this home's jobs
    try:
        yield
    finally:
        if worker is not None:
            worker.stop()


def serve_stdio(service: JobService, user: str | None = None, with_worker: bool = True) -> None:
    """Serve over stdin/stdout until the client closes it, running queued jobs in a worker thread."""
    with running_worker(service, with_worker):
        build_mcp_server(service, user).run("stdio")
