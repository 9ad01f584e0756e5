"""Intake with a chat model: the model reads the request into the reader's schema, the offline reader
checks it and fills what it missed, and every disagreement is said.

Decision: which reading wins, part by part.
- The subject is meaning: the chat model's wins when it passes the same check as the reader's (letters
  in any script, not a placeholder, not a model's name), so phrasings the word lists do not know
  still start the right job.
- Names and numbers are exact strings: the base model, sources, folder and hyperparameters come from
  the offline reader when it read them (a catalogue name cannot be misread), else from the chat model,
  checked: a model must be in the catalogue or a folder, numbers go through the JobSpec's bounds.
- No chat model, or one that fails (timeout, HTTP error, prose): the offline reader alone, and why.
What the chat model adds travels in the job's options ("subject", "base_model", …), so every later
`build_spec(request, options)` (the graph's intake, a resumed job) gives the same spec again.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, Field

from tools.intake.request_reader import ReadRequest, RequestError, check_subject, read_request
from tools.llm.chat_model import SourceName, structured_decision
from tools.models.catalogue import find_in_catalogue


class RequestReading(BaseModel):
    """A request as the chat model reads it: the reader's parts, in one structured answer."""

    is_fine_tuning: bool = Field(description="whether the request asks for a fine-tuned model")
    subject: str = Field("", max_length=200, description="what the model should learn, without filler")
    base_model: str = Field("", max_length=200, description="the base model named, as written; empty: none")
    sources: list[SourceName] = Field(default_factory=list, max_length=5)
    docs_path: str = Field("", max_length=500, description="a folder of the user's documents; empty: none")
    epochs: float | None = Field(None, description="training epochs, only when stated")
    lora_rank: int | None = Field(None, description="the LoRA rank, only when stated")
    learning_rate: float | None = Field(None, description="the learning rate, only when stated")


@dataclass(frozen=True)
class Intake:
    """What intake adds to the job's options, how the request was read, and where the readers differ."""

    options: dict[str, Any]
    how: str
    disagreements: tuple[str, ...] = ()


def read_with_chat_model(sentence: str, model: Any) -> Intake:
    """The request read by `model` (a configured chat model, or None) and checked by the offline reader."""
    if model is None:
        return Intake({}, "offline reader")
    decision = structured_decision(model, RequestReading, "read_request", 1, sentence=sentence)
    if not decision.ok:
        return Intake({}, f"offline reader (chat model: {decision.reason})")
    try:
        offline: ReadRequest | None = read_request(sentence)
    except RequestError:
        offline = None
    return _reconcile(decision.value, offline)


def _reconcile(found: RequestReading, offline: ReadRequest | None) -> Intake:
    if not found.is_fine_tuning and offline is None:
        return Intake({}, "chat model and offline reader: not a fine-tuning request")
    options, disagreements = {}, []
    subject = _checked_subject(found.subject)
    if subject and (offline is None or subject.casefold() != offline.subject.casefold()):
        options["subject"] = subject
        if offline is not None:
            disagreements.append(f"subject: chat model {subject!r}, offline reader {offline.subject!r} "
                                 "(kept the chat model's)")
    model = _checked_model(found.base_model)
    offline_model = offline.base_model if offline else None
    if model and offline_model and model != offline_model:
        disagreements.append(f"base model: chat model {found.base_model!r}, offline reader {offline_model!r} "
                             "(kept the offline reader's)")
    elif model and not offline_model:
        options["base_model"] = model
    for target, value in _said_options(found).items():
        said = _lookup(offline.options if offline else {}, target)
        if said is None:
            _put(options, target, value)
        elif said != value:
            disagreements.append(f"{target}: chat model {value!r}, offline reader {said!r} "
                                 "(kept the offline reader's)")
    how = ("chat model, checked by the offline reader" if offline
           else "chat model (the offline reader could not read it)")
    return Intake(options, how, tuple(disagreements))


def _checked_subject(subject: str) -> str | None:
    subject = subject.strip()
    try:
        check_subject(subject, {})
    except RequestError:
        return None
    return subject


def _checked_model(name: str) -> str | None:
    name = name.strip()
    if name.startswith(("/", "./", "../", "~")):
        return name
    found = find_in_catalogue(name) if name else None
    return found.key if found else None


def _said_options(found: RequestReading) -> dict[str, Any]:
    said = {"sources": found.sources or None, "docs_path": found.docs_path.strip() or None,
            "training.epochs": found.epochs, "training.lora_r": found.lora_rank,
            "training.learning_rate": found.learning_rate}
    return {target: value for target, value in said.items() if value is not None}


def _lookup(options: dict[str, Any], target: str) -> Any:
    node: Any = options
    for part in target.split("."):
        node = node.get(part) if isinstance(node, dict) else None
    return node


def _put(options: dict[str, Any], target: str, value: Any) -> None:
    *parents, leaf = target.split(".")
    for parent in parents:
        options = options.setdefault(parent, {})
    options[leaf] = value
