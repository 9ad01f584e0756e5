"""Files that ship inside the package: the prompt templates, the general evaluation sets and the
demo corpus. They are found with importlib.resources, so an installed wheel finds them as a
checkout does."""

from __future__ import annotations

from importlib import resources
from pathlib import Path


def packaged(*parts: str) -> Path:
    """A file or folder inside the installed `tools` package (pip unpacks wheels: a real path)."""
    return Path(str(resources.files("tools").joinpath(*parts)))


PROMPTS_DIR = packaged("llm", "prompts")
EVAL_SETS_DIR = packaged("eval_sets")
GENERAL_SETS_DIR = EVAL_SETS_DIR / "general"
DEMO_CORPUS = EVAL_SETS_DIR / "demo_corpus"
