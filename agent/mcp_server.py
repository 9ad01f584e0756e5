"""`ftagent mcp`: the agent over the Model Context Protocol (the official `mcp` SDK, 2.x), so another
agent can start and follow fine-tuning jobs, list, show and ask models, and cancel.

Every tool goes through the same JobService as the other doors. Jobs run in a queue worker thread of
this process (when no other worker holds the home; then they wait for that one). Over stdio the caller
is the local user (`--user`, default the OS user) and owns the jobs it starts; a failure comes back as
a tool error whose text says what was wrong (the same messages the CLI prints)."""

from __future__ import annotations

import getpass
from collections.abc import Callable
from functools import partial, wraps
from typing import TYPE_CHECKING, Any

import anyio

from agent.service import JobService

if TYPE_CHECKING:
    from mcp.server.mcpserver import MCPServer

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
    """The MCP tools as plain methods over the service (tested directly and through the SDK)."""

    def __init__(self, service: JobService, user: str) -> None:
        self.service = service
        self.user = user

    def start_job(self, sentence: str, options: dict[str, Any] | None = None) -> dict[str, Any]:
        """Validate and queue a fine-tuning job; returns its id (the worker starts it)."""
        record = self.service.submit(sentence, options or {}, owner=self.user)
        return {"job_id": record.job_id, "status": record.status, "request": record.request}

    def job_status(self, job_id: str) -> dict[str, Any]:
        return {k: v for k, v in self.service.status(job_id).items() if v not in (None, "", {})}

    def job_events(self, job_id: str, after: int = 0) -> list[dict[str, Any]]:
        """Events after the first `after` (each has `seq`; pass the last one back to page on)."""
        return self.service.read_events(job_id, after)[:MAX_EVENTS]

    def list_models(self) -> list[dict[str, Any]]:
        return [model_summary(version) for version in self.service.models()]

    def show_model(self, name: str) -> dict[str, Any]:
        return {**model_summary(self.service.model(name)), "card": self.service.model_card(name)}

    def ask_model(self, name: str, question: str, max_new_tokens: int = 128) -> str:
        return self.service.ask(name, question, max_new_tokens)

    def cancel_job(self, job_id: str) -> dict[str, Any]:
        record = self.service.cancel(job_id, self.user)
        return {"job_id": record.job_id, "status": record.status, "cancel_requested": bool(record.cancel_requested)}


def said_clearly(method: Callable[..., Any]) -> Callable[..., Any]:
    """The caller's mistakes (a bad request, an unknown job or model, someone else's job) come back as
    a tool error with the same message the CLI prints; the SDK would hide any other exception's text."""
    from mcp.server.mcpserver.exceptions import ToolError

    from agent.service import NotOwner
    from graphs.spec import RequestError
    from tools.base_models import BaseModelError
    from tools.job_store import UnknownJob
    from tools.registry import RegistryError, RegistryRefusal

    @wraps(method)
    def checked(*args: Any, **kwargs: Any) -> Any:
        try:
            return method(*args, **kwargs)
        except (RequestError, UnknownJob, RegistryError, RegistryRefusal, NotOwner, BaseModelError) as error:
            raise ToolError(str(error)) from error

    return checked


def build_mcp_server(service: JobService, user: str | None = None) -> MCPServer:
    """The MCPServer with one tool per AgentTools method; slow ones run in a worker thread."""
    from mcp.server.mcpserver import MCPServer

    tools = AgentTools(service, user or getpass.getuser())
    for name in TOOL_NAMES:
        setattr(tools, name, said_clearly(getattr(tools, name)))
    server = MCPServer("ftagent", instructions=INSTRUCTIONS)

    @server.tool(description="Start a fine-tuning job from one sentence, e.g. 'fine-tune SmolLM2 on soil "
                             "science'. options: the job spec (docs_path, dataset, base_model, training, "
                             "gates, ...). Returns the job id; the job runs in the background.")
    async def start_job(sentence: str, options: dict[str, Any] | None = None) -> dict[str, Any]:
        return await anyio.to_thread.run_sync(partial(tools.start_job, sentence, options))

    @server.tool(description="A job's status, phase, last event and training step.")
    def job_status(job_id: str) -> dict[str, Any]:
        return tools.job_status(job_id)

    @server.tool(description=f"A job's events after the first `after` (at most {MAX_EVENTS}).")
    def job_events(job_id: str, after: int = 0) -> list[dict[str, Any]]:
        return tools.job_events(job_id, after)

    @server.tool(description="Registered model versions with their status, gates and metrics.")
    def list_models() -> list[dict[str, Any]]:
        return tools.list_models()

    @server.tool(description="One registered model: status, metrics and its model card.")
    def show_model(name: str) -> dict[str, Any]:
        return tools.show_model(name)

    @server.tool(description="Ask a registered model a question; returns its answer.")
    async def ask_model(name: str, question: str, max_new_tokens: int = 128) -> str:
        return await anyio.to_thread.run_sync(partial(tools.ask_model, name, question, max_new_tokens))

    @server.tool(description="Cancel a job you started (a queued one at once, a running one at its next step).")
    def cancel_job(job_id: str) -> dict[str, Any]:
        return tools.cancel_job(job_id)

    return server


def serve_stdio(service: JobService, user: str | None = None, with_worker: bool = True) -> None:
    """Serve over stdin/stdout until the client closes it, running queued jobs in a worker thread."""
    from agent.queue import Worker, WorkerBusy

    worker = Worker(service) if with_worker else None
    if worker is not None:
        try:
            worker.start_thread()
        except WorkerBusy:
            worker = None  # another worker runs this home's jobs
    try:
        build_mcp_server(service, user).run("stdio")
    finally:
        if worker is not None:
            worker.stop()
