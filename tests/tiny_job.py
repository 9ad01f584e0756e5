"""Options for a tiny job (tiny model, a few steps, small evaluation) that runs end to end in seconds."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

DEMO_CORPUS = Path(__file__).resolve().parents[1] / "tools" / "eval_sets" / "demo_corpus"
SMALL_CORPUS_FILES = ("bit-flip-and-phase-flip-codes.md", "shor-code.md", "surface-code.md",
                      "logical-qubits-and-code-distance.txt", "stabilizer-formalism.html")
SUBJECT_SENTENCE = "fine-tune on quantum error correction"


def small_corpus(target: Path) -> Path:
    """Five on-topic documents of the demo corpus (curation takes seconds instead of tens)."""
    target.mkdir(parents=True, exist_ok=True)
    for name in SMALL_CORPUS_FILES:
        shutil.copy(DEMO_CORPUS / name, target / name)
    return target


def tiny_job_options(model_dir: Path, docs: Path | str = DEMO_CORPUS, **overrides: Any) -> dict[str, Any]:
    """The options the brief prescribes for a tiny job, with no critic rounds unless overridden."""
    options: dict[str, Any] = {
        "base_model": str(model_dir), "docs_path": str(docs), "max_rounds": 0,
        "training": {"max_steps": 6, "checkpoint_every": 2},  # precision: FTAGENT_PRECISION
        "evaluation": {"generate_limit": 2, "max_new_tokens": 8, "general_texts": 3},
    }
    options.update(overrides)
    return options
