"""Prompt templates as files in tools/llm/prompts/ (package data), loaded by name with strict variables."""

from __future__ import annotations

import string
from pathlib import Path

from tools.package_data import PROMPTS_DIR


class PromptError(ValueError):
    """A prompt is missing, or was given missing or extra variables."""


def load_prompt(name: str, prompts_dir: Path = PROMPTS_DIR) -> str:
    path = prompts_dir / f"{name}.txt"
    if not path.exists():
        raise PromptError(f"no prompt named {name!r} in {prompts_dir}")
    return path.read_text(encoding="utf-8").strip()


def template_variables(template: str) -> set[str]:
    return {field for _, field, _, _ in string.Formatter().parse(template) if field}


def render_prompt(name: str, prompts_dir: Path = PROMPTS_DIR, **variables: str) -> str:
    """The named template filled in; a missing or an extra variable raises PromptError."""
    template = load_prompt(name, prompts_dir)
    expected = template_variables(template)
    missing, extra = expected - variables.keys(), variables.keys() - expected
    if missing or extra:
        raise PromptError(
            f"prompt {name!r} takes {sorted(expected)}; missing {sorted(missing)}, extra {sorted(extra)}"
        )
    return template.format(**variables)
