"""The critic's deterministic policy: each failed gate maps to a remedy and the node to go back to."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Literal

from graphs.spec import Curation, JobSpec

MAX_EPOCHS = 8.0
MAX_RESEARCH_QUERIES = 12
REMOTE_SOURCES = frozenset({"arxiv", "pubmed", "wikipedia", "web"})


@dataclass(frozen=True)
class Remedy:
    route: Literal["researcher", "curator", "generator", "trainer"]
    section: str  # which part of the spec changes
    changes: dict[str, Any]
    reason: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def searches_remote_sources(spec: JobSpec) -> bool:
    """Whether the researcher searches remote sources: named ones, or chosen by subject (no docs, no URLs)."""
    return bool(REMOTE_SOURCES & set(spec.sources)) or not (spec.sources or spec.docs_path or spec.urls)


def remedy_for_too_little_data(spec: JobSpec, train_examples: int) -> Remedy:
    """Widen curation first (cheap, offline): lower relevance thresholds so more chunks reach the generator.
    When curation is already widened and the job searches remote sources, widen the research instead:
    twice the queries per source, and Wikipedia added when the job named sources without it."""
    widened = spec.curation.doc_relevance_threshold < Curation().doc_relevance_threshold
    research = spec.research
    if widened and searches_remote_sources(spec) and research.max_queries < MAX_RESEARCH_QUERIES:
        extra = research.extra_sources + (["wikipedia"] if spec.sources and "wikipedia" not in
                                          [*spec.sources, *research.extra_sources] else [])
        return Remedy(
            route="researcher", section="research",
            changes={"max_queries": min(MAX_RESEARCH_QUERIES, research.max_queries * 2), "extra_sources": extra},
            reason=f"too little data: {train_examples} training examples, the gate needs "
                   f"{spec.gates.min_train_examples}, and curation is already widened; searching more widely")
    return Remedy(
        route="curator", section="curation",
        changes={"doc_relevance_threshold": round(spec.curation.doc_relevance_threshold - 0.1, 3),
                 "chunk_relevance_threshold": round(spec.curation.chunk_relevance_threshold - 0.1, 3)},
        reason=f"too little data: {train_examples} training examples, the gate needs "
               f"{spec.gates.min_train_examples}; widening curation")


def remedy_for_gates(spec: JobSpec, failed: list[dict[str, Any]], training: dict[str, Any]) -> Remedy:
    """General regression first (forgetting is worse than a small gain), then underfit/overfit."""
    names = {g["name"] for g in failed}
    cfg = spec.training
    if "general_perplexity" in names:
        return Remedy("trainer", "training", {"learning_rate": cfg.learning_rate / 2, "lora_r": max(4, cfg.lora_r // 2)},
                      "general regression: halving the learning rate and the LoRA rank")
    val_history = training.get("val_history") or []
    overfit = len(val_history) >= 2 and val_history[-1] > min(val_history) + 1e-3
    if overfit:
        return Remedy("trainer", "training",
                      {"epochs": max(1.0, cfg.epochs / 2), "lora_dropout": min(0.3, cfg.lora_dropout + 0.1)},
                      "overfit (validation loss rising): fewer epochs, more dropout")
    if cfg.epochs < MAX_EPOCHS:
        return Remedy("trainer", "training", {"epochs": min(MAX_EPOCHS, cfg.epochs * 2)},
                      "underfit (answer NLL not low enough): doubling the epochs")
    return Remedy("trainer", "training", {"learning_rate": min(1e-3, cfg.learning_rate * 2)},
                  "underfit at the epoch cap: doubling the learning rate")
