"""The API routes the web console (agent/console.py) reads and acts through; any client may use them.

A job's artefacts as JSON: its dataset (summary, card, example rows), its latest evaluation report (tuned
vs base, gates, per-example answers side by side) and its rounds (every evaluation and critic decision);
before the job has made one, the answer is `ready: false` with the reason (a follower asks early). Model
actions: ask a version next to its base, promote, roll back, delete. And the chat: the same conversation
as `ftagent chat`, over HTTP, with its questions back when something is missing.

Who may: a job's artefacts only for its owner or an admin (404 for anyone else, as for an unknown job);
promote, roll back and delete change what every user is served, so they need an admin token (403); the
chat's jobs are remote jobs of the caller (document roots, public URLs, gates: agent/access.py).
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, ConfigDict, Field

from agent.access import Refused
from agent.chat import ChatSessions
from agent.service import JobService
from tools.stores.api_tokens import Caller

MAX_EXAMPLES_PER_SPLIT = 50


class ChatMessage(BaseModel):
    """One message to the agent's chat. `session_id` continues a conversation (each reply gives one);
    `options` are JobSpec options for the jobs this conversation starts (an empty value removes one)."""

    model_config = ConfigDict(extra="forbid")
    message: str = Field(min_length=1, max_length=4000, examples=["fine-tune SmolLM2 on marine biology"])
    session_id: str | None = Field(None, max_length=64)
    options: dict[str, Any] = Field(default_factory=dict)


class AskRequest(BaseModel):
    """A question for a registered version; `compare_base` also answers it with the version's base model."""

    model_config = ConfigDict(extra="forbid")
    question: str = Field(min_length=1, max_length=2000)
    max_new_tokens: int = Field(96, ge=1, le=256)
    compare_base: bool = True


class PromoteRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    force: bool = Field(False, description="promote a version that failed its gates")


def ready(found: dict[str, Any] | None, job_id: str, what: str) -> dict[str, Any]:
    """The artefact with `ready: true`, or `ready: false` and why while the job has not made it yet (200
    either way; an unknown job is a 404)."""
    if found is None:
        return {"ready": False, "reason": f"job {job_id} has no {what} yet"}
    return {"ready": True, **found}


def _caller(request: Request) -> Caller:
    return request.state.caller  # set by the API's token check, which guards every route here


CallerDep = Annotated[Caller, Depends(_caller)]


def console_router(service: JobService) -> APIRouter:
    """The routes above, behind the API's token check (it names the caller)."""
    router = APIRouter()
    _job_artefact_routes(router, service)
    _model_action_routes(router, service)
    _chat_routes(router, service)
    return router


def _job_artefact_routes(router: APIRouter, service: JobService) -> None:
    @router.get("/jobs/{job_id}/dataset", tags=["jobs"], summary="The job's dataset: summary, card, examples")
    def get_dataset(job_id: str, who: CallerDep, per_split: int = 6) -> dict[str, Any]:
        service.job_for(job_id, who)
        limit = max(1, min(per_split, MAX_EXAMPLES_PER_SPLIT))
        return ready(service.job_dataset(job_id, limit), job_id, "dataset")

    @router.get("/jobs/{job_id}/evaluation", tags=["jobs"], summary="The job's latest evaluation: tuned vs base")
    def get_evaluation(job_id: str, who: CallerDep) -> dict[str, Any]:
        service.job_for(job_id, who)
        return ready(service.job_evaluation(job_id), job_id, "evaluation")

    @router.get("/jobs/{job_id}/rounds", tags=["jobs"], summary="Every evaluated round and critic decision")
    def get_rounds(job_id: str, who: CallerDep) -> dict[str, Any]:
        service.job_for(job_id, who)
        return service.job_rounds(job_id)


def _admin_only(who: Caller, action: str) -> None:
    if not who.admin:
        raise Refused(f"only an admin may {action} a model version (it changes what every user is served)")


def _model_action_routes(router: APIRouter, service: JobService) -> None:
    @router.post("/models/{name}/ask", tags=["models"], summary="Ask a version (and its base model)")
    def ask_model(name: str, body: AskRequest) -> dict[str, Any]:
        if body.compare_base:
            answers = service.ask_with_base(name, body.question, body.max_new_tokens)
        else:
            answers = {"tuned": service.ask(name, body.question, body.max_new_tokens), "base": None}
        return {"model": name, "question": body.question, **answers}

    @router.post("/models/{name}/promote", tags=["models"], summary="Put a version in production")
    def promote_model(name: str, who: CallerDep, body: PromoteRequest | None = None) -> dict[str, Any]:
        """The family's current production version is archived; a version that failed its gates needs
        `force` (409 without). Admins only."""
        _admin_only(who, "promote")
        return service.promote(name, force=bool(body and body.force)).to_dict()

    @router.post("/models/{name}/rollback", tags=["models"], summary="Back to the family's previous version")
    def rollback_model(name: str, who: CallerDep) -> dict[str, Any]:
        _admin_only(who, "roll back")
        demoted, restored = service.rollback(name)
        return {"demoted": demoted.to_dict(), "restored": restored.to_dict()}

    @router.delete("/models/{name}", tags=["models"], summary="Remove a version and its folder")
    def delete_model(name: str, who: CallerDep, force: bool = False) -> dict[str, Any]:
        """The production version is refused (409) unless `force`. Admins only."""
        _admin_only(who, "delete")
        return service.delete_model(name, force=force).to_dict()


def _chat_routes(router: APIRouter, service: JobService) -> None:
    sessions = ChatSessions(service)

    @router.get("/me", tags=["chat"], summary="Who the API takes the caller to be (from their token)")
    def whoami(who: CallerDep) -> dict[str, Any]:
        return {"user": who.user, "admin": who.admin}

    @router.post("/chat", tags=["chat"], summary="Talk to the agent: start a job in words, follow it, stop it")
    def chat(body: ChatMessage, who: CallerDep) -> dict[str, Any]:
        """The conversation of `ftagent chat`: a request missing something gets a question back, and the
        next message (with the reply's `session_id`) answers it. Its jobs are the caller's remote jobs."""
        return sessions.reply(who.user, body.session_id, body.message, body.options, remote=who)
