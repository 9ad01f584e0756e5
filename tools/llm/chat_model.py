"""The configured chat model for judgement calls, and structured decisions that fall back cleanly.

Every specialist keeps a deterministic policy; when a chat model is configured (FTAGENT_CHAT_MODEL, any
OpenAI-compatible endpoint) it may ask the model instead. `structured_decision` renders a prompt from
tools/llm/prompts/, asks for a pydantic object and returns a `Decision`: the object, or None with the reason
("no chat model configured", "timeout", "API error (HTTP 500)", "malformed output", …) so the caller
takes its deterministic path and records why.

Decision: structured output uses `method="json_schema"` (OpenAI's `response_format` with the schema).
- It needs no tool-calling support on the server (llama.cpp without --jinja, small local servers and
  this project's own server do not call tools, so "function_calling" would fail there); the reply is
  read from the message content.
- Servers with structured output (OpenAI, vLLM, llama.cpp, Ollama, LM Studio) constrain decoding to
  the schema, enums included, so the menu a caller offers is enforced by the server as well.
- "json_mode" does not carry the schema at all. To cover servers that ignore `response_format`, the
  system prompt (tools/llm/prompts/structured_system.txt) also states the JSON schema; whatever comes back is
  validated by pydantic, and anything else counts as a failure.
Retries are ours (counted by reason), not the client's silent ones (max_retries=0), and each request
has a timeout. Requests run in the thread that asks (`StructuredOutput`): a cancelled job stops at once
instead of waiting for a reply in a thread of langchain's own. Only text the caller passes reaches a
prompt: callers pass user text and metrics, never crawled documents (crawled text is data, never
instructions).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Generic, Literal, Protocol, TypeVar

from pydantic import BaseModel, Field, ValidationError, field_validator

from tools.llm.prompt_files import PromptError, render_prompt
from tools.sources.names import SOURCE_NAMES

if TYPE_CHECKING:
    from langchain_openai import ChatOpenAI

DECISION_MAX_TOKENS = 512
NO_MODEL = "no chat model configured"
T = TypeVar("T", bound=BaseModel)


class ChatSettings(Protocol):
    """The settings a chat model is built from (agent.settings.Settings has them)."""

    chat_model: str | None
    chat_base_url: str | None
    chat_api_key: str | None
    chat_timeout_s: float


def build_chat(model: str, base_url: str | None, api_key: str | None, *, timeout_s: float,
               temperature: float = 0.0, max_tokens: int = DECISION_MAX_TOKENS) -> ChatOpenAI:
    """A ChatOpenAI client for an OpenAI-compatible endpoint, with a timeout and no silent retries."""
    from langchain_openai import ChatOpenAI

    return ChatOpenAI(model=model, base_url=base_url, api_key=api_key or "not-needed", timeout=timeout_s,
                      max_retries=0, temperature=temperature, max_tokens=max_tokens)


class StructuredOutput:
    """`chat.with_structured_output(schema, method=method, include_raw=True)`, asked in the calling thread.

    langchain's include_raw chain sends the request from a thread pool of its own (RunnableParallel), and
    the interpreter joins those threads at exit: a job cancelled while a request was open stopped at once,
    but its process then waited for the reply, up to the request's timeout. Here the request and the
    parsing run where `invoke` is called; the result is the same dict: "raw" (the reply message),
    "parsed" (the schema object, or None) and "parsing_error" (why it is None). Request errors raise."""

    def __init__(self, chat: ChatOpenAI, schema: type[BaseModel],
                 method: Literal["json_schema", "json_mode"]) -> None:
        from langchain_core.runnables import RunnableSequence

        steps = chat.with_structured_output(schema, method=method).steps  # the request, then the parser
        self._request = steps[0]
        self._parse = steps[1] if len(steps) == 2 else RunnableSequence(*steps[1:])

    def invoke(self, messages: list[tuple[str, str]]) -> dict[str, Any]:
        raw = self._request.invoke(messages)
        try:
            return {"raw": raw, "parsed": self._parse.invoke(raw), "parsing_error": None}
        except Exception as error:  # noqa: BLE001 - as langchain's fallback: parsed None, with the error
            return {"raw": raw, "parsed": None, "parsing_error": error}


def chat_model_from(settings: ChatSettings, *, max_tokens: int = DECISION_MAX_TOKENS) -> ChatOpenAI | None:
    """The configured chat model for decisions, or None when none is configured. Each request may take
    `settings.chat_timeout_s` seconds (FTAGENT_CHAT_TIMEOUT, config.yaml chat_timeout_s, default 30)."""
    if not getattr(settings, "chat_model", None):
        return None
    return build_chat(settings.chat_model, settings.chat_base_url, settings.chat_api_key,
                      timeout_s=settings.chat_timeout_s, max_tokens=max_tokens)


@dataclass(frozen=True)
class Decision(Generic[T]):
    """A model's structured answer (`value`), or None and why; `failures` lists each failed attempt."""

    value: T | None
    reason: str
    failures: tuple[str, ...] = field(default=())

    @property
    def ok(self) -> bool:
        return self.value is not None


def decision_messages(schema: type[BaseModel], prompt_name: str, **variables: str) -> list[tuple[str, str]]:
    """(role, content) messages: the shared structured-output system prompt, then the named prompt."""
    system = render_prompt("structured_system", schema=json.dumps(schema.model_json_schema()))
    return [("system", system), ("user", render_prompt(prompt_name, **variables))]


def structured_decision(model: ChatOpenAI | None, schema: type[T], prompt_name: str, retries: int = 2,
                        **variables: str) -> Decision[T]:
    """Ask `model` for a `schema` object with the named prompt; up to `retries` more attempts on failure.
    Never raises for model trouble: a failed decision says why, so the caller can fall back."""
    if model is None:
        return Decision(None, NO_MODEL)
    try:
        messages = decision_messages(schema, prompt_name, **variables)
    except PromptError as error:
        return Decision(None, f"prompt error: {error}")
    structured = StructuredOutput(model, schema, "json_schema")
    failures: list[str] = []
    for _ in range(retries + 1):
        outcome = _ask(structured, schema, messages)
        if isinstance(outcome, schema):
            attempt = f" (attempt {len(failures) + 1}; before: {', '.join(failures)})" if failures else ""
            return Decision(outcome, f"answered by the chat model{attempt}", tuple(failures))
        failures.append(str(outcome))
    return Decision(None, f"chat model failed {len(failures)} times: {', '.join(failures)}", tuple(failures))


def _ask(structured: Any, schema: type[T], messages: list[tuple[str, str]]) -> T | str:
    """One request: the validated object, or the failure's name."""
    import openai

    try:
        reply: dict[str, Any] = structured.invoke(messages)
    except openai.APITimeoutError:
        return "timeout"
    except openai.LengthFinishReasonError:
        return "truncated output"
    except openai.APIStatusError as error:
        return f"API error (HTTP {error.status_code})"
    except openai.APIConnectionError:
        return "API error (connection)"
    except ValidationError as error:
        return _invalid(error)
    except ValueError:
        return "malformed output"
    parsed = reply.get("parsed")
    if isinstance(parsed, schema):
        return parsed
    content = getattr(reply.get("raw"), "content", "")
    return "malformed output" if str(content).lstrip().startswith(("{", "[")) else "prose instead of structured output"


def _invalid(error: ValidationError) -> str:
    """"prose instead of structured output" when the reply was not JSON at all, else "malformed output"."""
    not_json = any(e.get("type") == "json_invalid" for e in error.errors())
    return "prose instead of structured output" if not_json else "malformed output"


# -- decision schemas ------------------------------------------------------------------------------

class QueryPlan(BaseModel):
    """Search queries for a subject, as the chat model proposes them."""

    queries: list[str] = Field(min_length=1, max_length=20, description="short search queries, best first")
    reason: str = Field("", max_length=500, description="why these queries, in one sentence")

    @field_validator("queries")
    @classmethod
    def _short_and_distinct(cls, value: list[str]) -> list[str]:
        kept = list(dict.fromkeys(q.strip() for q in value if q.strip()))
        if not kept or any(len(q) > 200 for q in kept):
            raise ValueError("queries must be non-empty and at most 200 characters each")
        return kept


def expand_queries_with_model(model: ChatOpenAI | None, subject: str, max_queries: int,
                              retries: int = 1) -> Decision[QueryPlan]:
    """Queries for the subject from the chat model (the subject is user text; no document reaches it)."""
    return structured_decision(model, QueryPlan, "expand_queries", retries, subject=subject,
                               max_queries=str(max_queries))


class RemedyChoice(BaseModel):
    """The chat model's pick among the remedies the critic's policy offers (`choice` is one of their ids)."""

    choice: str = Field(description="the id of one offered remedy")
    reason: str = Field("", max_length=500, description="why this remedy, in one sentence")


def remedy_choice_schema(ids: list[str]) -> type[RemedyChoice]:
    """RemedyChoice whose `choice` may only be one of `ids` (an enum in the JSON schema as well)."""
    from pydantic import create_model

    return create_model("RemedyChoice", __base__=RemedyChoice,
                        choice=(Literal[tuple(ids)], Field(description="the id of one offered remedy")))


IntentKind = Literal["fine_tune", "status", "cancel", "models", "ask", "set_sources", "help", "quit", "other"]
SourceName = Literal[SOURCE_NAMES]  # type: ignore[valid-type]


class ChatIntent(BaseModel):
    """What one chat message asks for, with the pieces each kind needs."""

    kind: IntentKind
    subject: str = Field("", max_length=200, description="fine_tune: what the model should learn")
    base_model: str = Field("", max_length=120, description="fine_tune: the base model named, if any")
    question: str = Field("", max_length=2000, description="ask: the question for the model")
    model: str = Field("", max_length=120, description="ask: the model named; empty = the newest")
    sources: list[SourceName] = Field(default_factory=list, max_length=5, description="set_sources: the sources")
