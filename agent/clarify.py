"""The question a front door asks back when a request cannot be acted on (shared by HTTP, chat and Slack):
one short question that names what was understood so far."""

from __future__ import annotations

from graphs.spec import RequestError
from tools.models.catalogue import CATALOGUE

EXAMPLE = "fine-tune SmolLM2 on quantum error correction"


def _so_far(understood: dict) -> str:
    """'I understood the model smollm2-135m; ' (or nothing) from what the reader made out."""
    parts = [f"the model {understood['model']}" if understood.get("model") else "",
             f"the subject {understood['subject']!r}" if understood.get("subject") else ""]
    parts = [p for p in parts if p]
    return f"I understood {' and '.join(parts)}; " if parts else ""


def clarifying_question(error: RequestError) -> str:
    """One question that asks for exactly what was missing or wrong in the request."""
    message = str(error)
    understood = error.understood
    model = understood.get("model")
    if message.startswith("no subject"):
        target = f" {model}" if model else " the model"
        return f"What should{target} learn about? For example: '{EXAMPLE}'."
    if "but not what to do" in message:
        subject = understood.get("subject", "")
        return (f"{_so_far(understood)}shall I fine-tune {model or 'a model'} on it? If so, say "
                f"'fine-tune {model or 'SmolLM2'} on {subject}' (I read the action in English).")
    if message.startswith("I don't know the model"):
        known = ", ".join(m.display for m in CATALOGUE[:4])
        return (f"I don't know the model {model!r}: which base model should I use? One I know ({known}, …) "
                f"or a local folder; '{EXAMPLE}'.")
    if message.startswith("the request is empty"):
        return f"What would you like a model to learn? For example: '{EXAMPLE}'."
    if "malformed text" in message:
        return "Could you send the request again as plain text? Part of it was not valid UTF-8."
    if "looks like a model name" in message:
        return f"{_so_far({'model': model})}that subject looks like a model name: what topic should it learn about?"
    if message.startswith("invalid option"):
        return f"Could you fix that option? {message}."
    if "names the model" in message:
        return "Which model did you mean: the one in the sentence or the one in the options?"
    return f"{_so_far(understood)}what should I fine-tune, and on what subject? Try '{EXAMPLE}'."
