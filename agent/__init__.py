"""Front doors: CLI, chat, Slack bot, HTTP API and the Python API (`FineTuner`), all over one service."""

from typing import Any

__all__ = ["FineTuner"]


def __getattr__(name: str) -> Any:
    """`from agent import FineTuner` without importing the graph (and torch) when agent.cli starts."""
    if name == "FineTuner":
        from agent.python_api import FineTuner

        return FineTuner
    raise AttributeError(f"module 'agent' has no attribute {name!r}")
