"""Tiny jobs for the tests (tiny model, a few steps, small evaluation) that run end to end in seconds:
their options (one builder, the graph tests' size on top), and running the graph directly."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from langgraph.checkpoint.memory import InMemorySaver

from agent.settings import resolve_settings
from graphs.checkpointer import StrictSerializer
from graphs.context import JobContext
from graphs.graph import build_graph

DEMO_CORPUS = Path(__file__).resolve().parents[2] / "tools" / "eval_sets" / "demo_corpus"
SMALL_CORPUS_FILES = ("bit-flip-and-phase-flip-codes.md", "shor-code.md", "surface-code.md",
                      "logical-qubits-and-code-distance.txt", "stabilizer-formalism.html")
SUBJECT_SENTENCE = "fine-tune on quantum error correction"


def small_corpus(target: Path) -> Path:
    """Five on-topic documents of the demo corpus (curation takes seconds instead of tens)."""
    target.mkdir(parents=True, exist_ok=True)
    for name in SMALL_CORPUS_FILES:
        shutil.copy(DEMO_CORPUS / name, target / name)
    return target


# The graph tests' size on top of it: 4 steps of 8 with a rank-16 adapter, a shorter answer, the critic's
# default rounds (the critic-round tests' gate failures are sized for it; a job's default adapter is wider).
GRAPH_JOB: dict[str, Any] = {"max_rounds": 2, "training": {"max_steps": 4, "batch_size": 8, "lora_r": 16,
                                                           "lora_alpha": 32},
                             "evaluation": {"max_new_tokens": 6, "general_texts": 4}}


def tiny_job_options(model_dir: Path, docs: Path | str = DEMO_CORPUS, base: dict[str, Any] | None = None,
                     **overrides: Any) -> dict[str, Any]:
    """The options of a tiny job (the brief's: a few steps, a small evaluation, no critic rounds), then
    `base` (GRAPH_JOB for the graph tests) and `overrides`; a dict is merged into its section."""
    options: dict[str, Any] = {
        "base_model": str(model_dir), "docs_path": str(docs), "max_rounds": 0,
        "training": {"max_steps": 6, "checkpoint_every": 2},  # precision: FTAGENT_PRECISION
        "evaluation": {"generate_limit": 2, "max_new_tokens": 8, "general_texts": 3},
    }
    for layer in (base or {}, overrides):
        for key, value in layer.items():
            options[key] = {**options.get(key, {}), **value} if isinstance(value, dict) else value
    return options


def run_job(home: Path, job_id: str, options: dict[str, Any],
            request: str = "fine-tune a model on quantum error correction",
            listeners: tuple = ()) -> dict[str, Any]:
    """The job graph invoked directly (in-memory checkpoints), as the service would with these options
    (`listeners` hear every event, progress ticks included)."""
    graph = build_graph(InMemorySaver(serde=StrictSerializer()))
    context = JobContext(resolve_settings({"home": home}), listeners)  # FTAGENT_PRECISION and the like apply
    config = {"configurable": {"thread_id": job_id}, "recursion_limit": 60}
    return graph.invoke({"job_id": job_id, "request": request, "options": options}, config, context=context)
