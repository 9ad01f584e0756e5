"""The question a front door asks back when a request cannot be acted on (shared by HTTP, chat and Slack)."""

from __future__ import annotations

from graphs.spec import RequestError

EXAMPLE = "fine-tune SmolLM2 on quantum error correction"


def clarifying_question(error: RequestError) -> str:
    """One question that asks for exactly what was missing or wrong in the request."""
    message = str(error)
    model = error.understood.get("model")
    if message.startswith("no subject"):
        target = f" {model}" if model else " the model"
        return f"What should{target} learn about? For example: '{EXAMPLE}'."
    if message.startswith("I don't know the model"):
        return f"Which base model should I use? Name one I know (e.g. SmolLM2) or a local folder; '{EXAMPLE}'."
    if message.startswith("the request is empty"):
        return f"What would you like a model to learn? For example: '{EXAMPLE}'."
    if "looks like a model name" in message:
        return "That subject looks like a model name: what topic should the model learn about?"
    if message.startswith("invalid option"):
        return f"Could you fix that option? {message}."
    if "names the model" in message:
        return "Which model did you mean: the one in the sentence or the one in the options?"
    return f"What should I fine-tune, and on what subject? Try '{EXAMPLE}'."
