"""`ftagent chat`: a terminal conversation with the agent.

A deterministic intent parser reads each message (start a job, how is it going, stop it, use PubMed only,
what models do I have, ask the new model: …); when a request misses something (no subject) the chat asks
for it instead of guessing, and the next message answers the question. Jobs run in a queue worker thread
of the chat process (or in an `ftagent worker`/`ftagent api` already running on the same home).

Decision: with a configured chat model (FTAGENT_CHAT_MODEL) each message is read by the model as a
structured `ChatIntent` (tools/llm/prompts/chat_intent.txt); without one, or when it fails, the deterministic parser
reads it. Either way the same handlers act on the intent, and a fine-tune request is submitted as a
sentence that goes through `graphs.spec.build_spec` (the user's own sentence when the parser can read it,
else "fine-tune <model> on <subject>" from the model's fields), so the JobSpec is the one any door makes.
"""

from __future__ import annotations

import getpass
import re
import secrets
import threading
from dataclasses import dataclass, field
from typing import Any, Literal

from agent.access import Refused
from agent.clarify import clarifying_question
from agent.service import JobService, NotOwner
from graphs.spec import RequestError, parse_request
from tools.intake.request_reader import has_action
from tools.llm.chat_model import ChatIntent, chat_model_from, structured_decision
from tools.sources.names import SOURCE_WORDS
from tools.stores.api_tokens import Caller
from tools.stores.job_store import TERMINAL_STATUSES, JobRecord, UnknownJob
from tools.stores.model_registry import RegistryError

IntentKind = Literal["fine_tune", "status", "cancel", "sources", "models", "ask", "help", "quit", "other"]

_ASK = re.compile(r"^(?:please\s+)?ask\s+(?:the\s+)?(?:(?P<latest>new|newest|latest|last|tuned)\s+model|"
                  r"(?:model\s+)?(?P<name>[\w.\-]+))\s*[:,]\s*(?P<question>.+)$", re.IGNORECASE)
_CANCEL = re.compile(r"\b(?:stop|cancel|abort|kill|halt)\b(?:\s+(?:it|that|the job|this|job))?", re.IGNORECASE)
_STATUS = re.compile(r"how(?:'s| is| are)? (?:it|things|the job|we) (?:going|doing)|\bstatus\b|\bprogress\b|"
                     r"how far|what'?s happening|any news|\bupdate\b", re.IGNORECASE)
_MODELS = re.compile(r"\b(?:what|which|list|show)(?: \w+)? models\b|\bmy models\b", re.IGNORECASE)
_SOURCES = re.compile(r"^(?:please\s+)?(?:only\s+)?use\s+(?P<names>[\w ,/&]+?)(?:\s+only)?[.!]?$", re.IGNORECASE)
_HELP = re.compile(r"^(?:help|\?|what can you do\??)$", re.IGNORECASE)
_QUIT = re.compile(r"^(?:quit|exit|bye|goodbye)[.!]?$", re.IGNORECASE)


@dataclass(frozen=True)
class Intent:
    kind: IntentKind
    argument: str = ""
    model: str = ""
    sources: tuple[str, ...] = ()


def _source_list(names: str) -> tuple[str, ...]:
    """Known source names mentioned in `names`, in order ("PubMed and arXiv" -> ("pubmed", "arxiv"))."""
    found = [SOURCE_WORDS[word] for word in re.split(r"[\s,/&]+|\band\b", names.lower()) if word in SOURCE_WORDS]
    return tuple(dict.fromkeys(found))


def parse_intent(message: str) -> Intent:
    """What the message asks for (deterministic: regular expressions, then the request parser)."""
    text = message.strip()
    if _QUIT.match(text):
        return Intent("quit")
    if _HELP.match(text):
        return Intent("help")
    if ask := _ASK.match(text):
        return Intent("ask", ask["question"].strip(), model="" if ask["latest"] else ask["name"])
    if (sources := _SOURCES.match(text)) and _source_list(sources["names"]):
        return Intent("sources", sources=_source_list(sources["names"]))
    if _mentions_fine_tuning(text):  # before the keyword intents: "fine-tune X on progress reports" is a request
        return Intent("fine_tune", text)
    if _MODELS.search(text):
        return Intent("models")
    stop = re.fullmatch(r"(?:please\s+)?(?:stop|cancel)(?: it| that| the job)?[.!]?", text, re.IGNORECASE)
    if _CANCEL.match(text) or stop:
        return Intent("cancel")
    if _STATUS.search(text):
        return Intent("status")
    try:
        parse_request(text)
    except RequestError:
        return Intent("other", text)
    return Intent("fine_tune", text)


def intent_from_model(model: Any, message: str, awaiting_subject: bool = False) -> tuple[Intent | None, str]:
    """The chat model's reading of the message as an Intent (None when there is no model or it failed),
    and how it was read."""
    decision = structured_decision(model, ChatIntent, "chat_intent", 1, message=message,
                                   awaiting_subject="yes" if awaiting_subject else "no")
    if not decision.ok:
        return None, decision.reason
    return to_intent(decision.value, message), decision.reason


def to_intent(found: ChatIntent, message: str) -> Intent:
    """The chat model's ChatIntent as the Intent the handlers take."""
    if found.kind == "fine_tune":
        return Intent("fine_tune", request_sentence(found, message))
    if found.kind == "set_sources":
        if not found.sources:
            return Intent("other", message)
        return Intent("sources", sources=tuple(dict.fromkeys(found.sources)))
    if found.kind == "ask":
        return Intent("ask", found.question.strip() or message, model=found.model.strip())
    return Intent(found.kind, message if found.kind == "other" else "")


def request_sentence(found: ChatIntent, message: str) -> str:
    """The sentence submitted for a fine-tune intent: the user's own when the request parser reads it,
    else one built from the model's subject and base model (both still parsed by build_spec)."""
    try:
        parse_request(message)
        return message.strip()
    except RequestError:
        pass
    if not found.subject.strip():
        return message.strip()
    model = f"{found.base_model.strip()} " if found.base_model.strip() else ""
    return f"fine-tune {model}on {found.subject.strip()}"


def _mentions_fine_tuning(text: str) -> bool:
    return has_action(text)


@dataclass
class ChatSession:
    """One conversation: the current job, preferences stated along the way, a pending question."""

    service: JobService
    user: str = field(default_factory=getpass.getuser)
    options: dict[str, Any] = field(default_factory=dict)  # options every job from this chat gets
    job_id: str | None = None
    pending_model: str | None = None  # set while waiting for a subject ("what should it learn?")
    awaiting_subject: bool = False
    use_chat_model: bool = True  # read messages with the configured chat model, if there is one
    last_intent: Intent | None = None
    intent_path: str = ""  # how the last message was read, and why
    # set by a remote door (chat over HTTP): the caller whose token opened the session; their jobs then
    # follow the remote rules (document roots, public URLs, gates; agent/access.py)
    remote: Caller | None = None

    def read(self, message: str) -> Intent:
        """The message's intent: the chat model's when configured and it answers well, else the parser's."""
        model = chat_model_from(self.service.settings) if self.use_chat_model else None
        intent, why = intent_from_model(model, message, self.awaiting_subject)
        if intent is None:
            intent, why = parse_intent(message), f"deterministic parser ({why})"
        else:
            why = f"chat model ({why})"
        self.last_intent, self.intent_path = intent, why
        return intent

    def reply(self, message: str) -> str:
        """The agent's answer to one message."""
        intent = self.read(message)
        if self.awaiting_subject and intent.kind in ("other", "fine_tune"):
            return self._start(self._with_subject(message))
        handler = getattr(self, f"_on_{intent.kind}")
        return handler(intent)

    # -- intents ---------------------------------------------------------------------------------
    def _on_fine_tune(self, intent: Intent) -> str:
        return self._start(intent.argument)

    def _on_status(self, _: Intent) -> str:
        if self.job_id is None:
            return "There is no job yet. Tell me what to fine-tune, e.g. 'fine-tune SmolLM2 on marine biology'."
        status = self.service.status(self.job_id)
        step = status.get("training_step") or {}
        training = f" Training step {step['step']}/{step['total_steps']}, loss {step['loss']:.3f}." if step else ""
        latest = f" Latest: {status['last_event']}." if status.get("last_event") else ""
        outcome = f" Outcome: {status['outcome']}." if status["status"] in TERMINAL_STATUSES and status.get(
            "outcome") else ""
        return f"Job {self.job_id} is {status['status']}.{latest}{training}{outcome}"

    def _on_cancel(self, _: Intent) -> str:
        if self.job_id is None:
            return "There is no job to stop."
        try:
            record = self.service.cancel(self.job_id, self.user)
        except NotOwner as error:
            return str(error)
        if record.status == "cancelled":
            return f"Job {self.job_id} is cancelled."
        if record.status in TERMINAL_STATUSES:
            return f"Job {self.job_id} had already {record.status}; nothing to stop."
        return f"Stopping job {self.job_id} at its next step; finished work is kept."

    def _on_sources(self, intent: Intent) -> str:
        self.options["sources"] = list(intent.sources)
        names = " and ".join(intent.sources)
        if self.job_id and self.service.jobs.get(self.job_id).status == "queued":
            old = self.service.jobs.get(self.job_id)
            self.service.cancel(old.job_id, self.user)
            new = self._submit(old.request, {**old.options, "sources": list(intent.sources)})
            self.job_id = new.job_id
            return f"OK: job {old.job_id} had not started, so I replaced it with job {new.job_id} using {names} only."
        if self.job_id and self.service.jobs.get(self.job_id).status not in TERMINAL_STATUSES:
            return (f"OK: your next job will use {names} only. Job {self.job_id} is already running with its "
                    f"sources; say 'stop it' and ask again to restart it with {names} only.")
        return f"OK: I will use {names} only."

    def _on_models(self, _: Intent) -> str:
        versions = self.service.models()
        if not versions:
            return "You have no models yet. Tell me what to fine-tune and I will make one."
        lines = [f"- {v.name} ({v.status}, gates {'passed' if v.gates_passed else 'failed'}): {v.subject}"
                 for v in versions]
        return "Your models:\n" + "\n".join(lines)

    def _on_ask(self, intent: Intent) -> str:
        name = intent.model or self._latest_model()
        if not name:
            return "There is no model to ask yet. Fine-tune one first."
        try:
            return f"{name}: {self.service.ask(name, intent.argument)}"
        except RegistryError as error:
            return f"{error}. Say 'what models do I have?' to see their names."

    def _on_help(self, _: Intent) -> str:
        return ("Tell me what to fine-tune ('fine-tune SmolLM2 on marine biology'), then ask 'how is it going?', "
                "'stop it', 'use PubMed only', 'what models do I have?' or 'ask the new model: <question>'.")

    def _on_quit(self, _: Intent) -> str:
        return "Bye. Jobs keep running in any worker; `ftagent status` shows them."

    def _on_other(self, intent: Intent) -> str:
        return self._start(intent.argument)

    # -- helpers ---------------------------------------------------------------------------------
    def _submit(self, sentence: str, options: dict[str, Any]) -> JobRecord:
        return self.service.submit(sentence, options, owner=self.user, remote=self.remote,
                                   chat_reading=not self.use_chat_model)  # read() asked the model already

    def _start(self, sentence: str) -> str:
        try:
            record = self._submit(sentence, dict(self.options))
        except Refused as error:
            return f"I cannot start that: {error}"
        except RequestError as error:
            self.awaiting_subject = str(error).startswith("no subject")
            self.pending_model = error.understood.get("model") if self.awaiting_subject else None
            return clarifying_question(error)
        self.awaiting_subject, self.pending_model, self.job_id = False, None, record.job_id
        return (f"Started job {record.job_id}: {self.service.understood(record)}. "
                "Ask 'how is it going?' any time, or 'stop it'.")

    def _with_subject(self, subject: str) -> str:
        subject = subject.strip().rstrip(".!?")
        subject = re.sub(r"^(?:on|about|it should learn(?: about)?|learn(?: about)?)\s+", "", subject,
                         flags=re.IGNORECASE)
        return f"fine-tune {self.pending_model} on {subject}" if self.pending_model else f"fine-tune on {subject}"

    def _latest_model(self) -> str | None:
        if self.job_id:
            try:
                if name := self.service.jobs.get(self.job_id).model_name:
                    return name
            except UnknownJob:
                pass
        versions = self.service.models()
        return max(versions, key=lambda v: v.created_at).name if versions else None


def run_terminal_chat(service: JobService, console: Any, user: str | None = None, start_worker: bool = True) -> int:
    """The interactive loop: read a line, print the reply; phase changes of running jobs print as they happen."""
    from agent.queue import Worker, WorkerBusy

    def show_phase(event: dict[str, Any]) -> None:
        if event["kind"] in ("phase", "cancelled"):
            console.print(f"  [dim]{event['phase']}: {event['message']}[/dim]", highlight=False)

    if start_worker:
        try:
            Worker(service, listeners=(show_phase,)).start_thread()
        except WorkerBusy:
            console.print("(another worker runs the jobs of this home; I will queue jobs for it)", highlight=False)
    session = ChatSession(service, user or getpass.getuser())
    console.print("ftagent chat: tell me what to fine-tune ('help' for more, 'quit' to leave).", highlight=False)
    while True:
        try:
            message = console.input("[bold]you>[/bold] ")
        except (EOFError, KeyboardInterrupt):
            return 0
        if not message.strip():
            continue
        console.print(f"agent> {session.reply(message)}", highlight=False, markup=False)
        if session.last_intent and session.last_intent.kind == "quit":
            return 0


class ChatSessions:
    """Web and HTTP chat conversations, each a `ChatSession` of one user, kept in memory by id.

    A message may carry JobSpec options (the console's documents folder and options box): they are laid
    over the session's own (what the chat was told, e.g. 'use PubMed only'); an empty value removes one.
    Only the most recent `capacity` conversations are kept; an unknown or evicted id starts a new one."""

    def __init__(self, service: JobService, capacity: int = 200) -> None:
        self.service, self.capacity = service, capacity
        self._sessions: dict[tuple[str, str], ChatSession] = {}
        self._lock = threading.Lock()

    def reply(self, user: str, session_id: str | None, message: str,
              options: dict[str, Any] | None = None, remote: Caller | None = None) -> dict[str, Any]:
        """One message of `user`'s conversation; `remote`: the caller of a remote door (its jobs then
        follow the remote rules)."""
        session_id, session = self._session(user, session_id, remote)
        for key, value in (options or {}).items():
            if value in (None, "", {}, []):
                session.options.pop(key, None)
            else:
                session.options[key] = value
        before = session.job_id
        text = session.reply(message)
        return {"session_id": session_id, "reply": text, "job_id": session.job_id,
                "started": session.job_id is not None and session.job_id != before,
                "awaiting_subject": session.awaiting_subject,
                "intent": session.last_intent.kind if session.last_intent else None,
                "read_by": session.intent_path}

    def _session(self, user: str, session_id: str | None,
                 remote: Caller | None = None) -> tuple[str, ChatSession]:
        with self._lock:
            if session_id and (user, session_id) in self._sessions:
                return session_id, self._sessions[(user, session_id)]
            session_id = secrets.token_urlsafe(12)
            self._sessions[(user, session_id)] = ChatSession(self.service, user, remote=remote)
            while len(self._sessions) > self.capacity:
                self._sessions.pop(next(iter(self._sessions)))
            return session_id, self._sessions[(user, session_id)]
