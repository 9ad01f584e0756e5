"""The critic's deterministic policy: each failed gate maps to a remedy and the node to go back to."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Literal

from graphs.spec import JobSpec

MAX_EPOCHS = 8.0


@dataclass(frozen=True)
class Remedy:
    route: Literal["researcher", "curator", "generator", "trainer"]
    section: str  # which part of the spec changes
    changes: dict[str, Any]
    reason: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def remedy_for_too_little_data(spec: JobSpec, train_examples: int) -> Remedy:
    """Widen curation: lower relevance thresholds so more chunks reach the generator."""
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
