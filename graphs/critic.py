"""The critic's deterministic policy: each failed gate maps to a remedy and the node to go back to."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import asdict, dataclass
from typing import Any, Literal

from graphs.spec import Curation, JobSpec, Training
from tools.llm.chat_model import remedy_choice_schema, structured_decision
from tools.sources.names import REMOTE_SOURCES

MAX_EPOCHS = 8.0
MAX_REPLAY = 0.3  # general examples mixed into training, as a fraction of the training split
MAX_MIN_QUALITY = 0.95
MAX_RESEARCH_QUERIES = 12
# gates whose failure (with the NLL gate passing) means answers the sources do not support: stricter generation
GROUNDING_GATES = frozenset({"answer_rouge_l", "judge_win_rate"})


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


MAX_PER_FACT = 6
MAX_DOCUMENT_SHARE = 0.6


def remedy_for_too_little_data(spec: JobSpec, train_examples: int) -> Remedy:
    """More from the same text first (the recipe: more question forms per fact, the passages repeated
    more), then widen curation (lower relevance thresholds so more chunks reach the generator), then,
    when the job searches remote sources, widen the research: twice the queries per source, and Wikipedia
    added when the job named sources without it."""
    if richer := richer_data(spec, train_examples):
        return richer
    widened = spec.curation.doc_relevance_threshold < Curation().doc_relevance_threshold
    research = widen_research(spec, train_examples)
    return research if widened and research else widen_curation(spec, train_examples)


def richer_data(spec: JobSpec, train_examples: int) -> Remedy | None:
    """More rows from the text the job has: one more question form per fact, a tenth more document rows
    (one more repeat allowed); None when the recipe is already at its limits."""
    gen = spec.generation
    if gen.max_per_fact >= MAX_PER_FACT and gen.document_share >= MAX_DOCUMENT_SHARE:
        return None
    return Remedy(
        route="generator", section="generation",
        changes={"max_per_fact": min(MAX_PER_FACT, gen.max_per_fact + 1),
                 "max_per_chunk": min(60, gen.max_per_chunk + 4),
                 "document_share": round(min(MAX_DOCUMENT_SHARE, gen.document_share + 0.1), 3),
                 "max_document_repeats": min(10, gen.max_document_repeats + 1)},
        reason=f"too little data: {train_examples} training rows, the gate needs {spec.gates.min_train_examples}; "
               "more question forms per fact and more document rows from the same text")


def widen_research(spec: JobSpec, train_examples: int) -> Remedy | None:
    """More queries per source (+ Wikipedia when named sources lack it); None when not possible."""
    research = spec.research
    if not (searches_remote_sources(spec) and research.max_queries < MAX_RESEARCH_QUERIES):
        return None
    extra = research.extra_sources + (["wikipedia"] if spec.sources and "wikipedia" not in
                                      [*spec.sources, *research.extra_sources] else [])
    return Remedy(
        route="researcher", section="research",
        changes={"max_queries": min(MAX_RESEARCH_QUERIES, research.max_queries * 2), "extra_sources": extra},
        reason=f"too little data: {train_examples} training examples, the gate needs "
               f"{spec.gates.min_train_examples}, and curation is already widened; searching more widely")


def widen_curation(spec: JobSpec, train_examples: int) -> Remedy:
    """Lower both relevance thresholds by 0.1 so more chunks reach the generator."""
    return Remedy(
        route="curator", section="curation",
        changes={"doc_relevance_threshold": round(spec.curation.doc_relevance_threshold - 0.1, 3),
                 "chunk_relevance_threshold": round(spec.curation.chunk_relevance_threshold - 0.1, 3)},
        reason=f"too little data: {train_examples} training examples, the gate needs "
               f"{spec.gates.min_train_examples}; widening curation")


def remedy_for_gates(spec: JobSpec, failed: Collection[str], val_history: Sequence[float]) -> Remedy:
    """General regression first (forgetting is worse than a small gain), then underfit/overfit. `failed`:
    the names of the failed gates; `val_history`: the round's validation losses by evaluation."""
    names = set(failed)
    cfg = spec.training
    if "general_perplexity" in names:
        return gentler_training(cfg)
    if names & GROUNDING_GATES and "answer_nll" not in names and can_regenerate(spec):
        return stricter_generation(spec)
    if is_overfit(val_history):
        return shorter_training(cfg)
    if cfg.epochs < MAX_EPOCHS:
        return longer_training(cfg)
    return (None if spec.dataset else more_document_rows(spec)) or faster_training(cfg)


def can_regenerate(spec: JobSpec) -> bool:
    """Whether a stricter example gate can still change the data: not for the user's own dataset (the
    job generated nothing), not past the strictest gate."""
    return not spec.dataset and spec.generation.min_quality < MAX_MIN_QUALITY


def is_overfit(val_history: Sequence[float]) -> bool:
    """Validation loss rising at the end of training."""
    return len(val_history) >= 2 and val_history[-1] > min(val_history) + 1e-3


def gentler_training(cfg: Training) -> Remedy:
    """General regression: the first time, half the learning rate and replay 10% general data; after that
    also half the LoRA rank and twice the replay (at most MAX_REPLAY)."""
    if cfg.replay_general <= 0:
        return Remedy("trainer", "training", {"learning_rate": cfg.learning_rate / 2, "replay_general": 0.1},
                      "general regression: halving the learning rate and replaying general examples (10%)")
    replay = min(MAX_REPLAY, round(cfg.replay_general * 2, 3))
    return Remedy("trainer", "training", {"learning_rate": cfg.learning_rate / 2, "lora_r": max(4, cfg.lora_r // 2),
                                          "replay_general": replay},
                  f"general regression again: halving the learning rate and the LoRA rank, replaying {replay:.0%}")


def stricter_generation(spec: JobSpec) -> Remedy:
    """Weak grounding (answers far from the references while the NLL gate passed): regenerate the data with
    a stricter example gate, so the model learns answers its sources support. Every threshold rises by 0.1.
    Extractive answers quote their chunk (lexical support 1.0, scores 0.8-1.0), so what drops examples is
    the semantic-support floor (0.45 -> 0.55 drops 12 of 157 demo examples, 3 of 112 PubMedQA ones) and the
    higher keep-outright score, which sends more examples through the review (support with margin, a
    complete sentence). Raising only the review score and the lexical floor regenerated the same data.
    A verbatim span is grounded by construction and passes any floor, so for extractive data the remedy
    also drops the forms whose answers restate a sentence rather than answer a question: cloze and yes/no
    items (at most 5% each by default)."""
    gen = spec.generation

    def stricter(value: float) -> float:
        return round(min(MAX_MIN_QUALITY, value + 0.1), 3)

    keep = max(gen.keep_quality, gen.min_quality)
    return Remedy("generator", "generation",
                  {"min_quality": stricter(gen.min_quality), "keep_quality": stricter(keep),
                   "min_lexical_support": stricter(gen.min_lexical_support),
                   "min_semantic_support": stricter(gen.min_semantic_support),
                   "max_cloze_share": 0.0, "max_yes_no_share": 0.0},
                  "weak grounding (tuned answers far from the references, NLL fine): stricter example gate, "
                  "no cloze or yes/no items")


def more_document_rows(spec: JobSpec) -> Remedy | None:
    """Answers the documents support but the model has not learned: regenerate with a larger share of
    document rows (the passages read more often) and one more question form per fact."""
    gen = spec.generation
    if gen.document_share >= MAX_DOCUMENT_SHARE:
        return None
    return Remedy("generator", "generation",
                  {"document_share": round(min(MAX_DOCUMENT_SHARE, gen.document_share + 0.15), 3),
                   "max_document_repeats": min(10, gen.max_document_repeats + 1),
                   "document_question_repeats": min(5, gen.document_question_repeats + 1),
                   "max_per_fact": min(MAX_PER_FACT, gen.max_per_fact + 1)},
                  "underfit on the documents' answers at the epoch cap: more document rows, more passes of the "
                  "questions about whole documents, more question forms")


def shorter_training(cfg: Training) -> Remedy:
    """Overfit: half the epochs (and half a step cap, which would otherwise keep the length), more dropout."""
    return Remedy("trainer", "training",
                  {"epochs": max(0.5, cfg.epochs / 2), "lora_dropout": min(0.3, cfg.lora_dropout + 0.1),
                   **_scaled_step_cap(cfg, 0.5)},
                  "overfit (validation loss rising): fewer epochs, more dropout")


def longer_training(cfg: Training) -> Remedy:
    """Underfit: twice the epochs (and twice a step cap, or the doubled epochs would change nothing)."""
    return Remedy("trainer", "training", {"epochs": min(MAX_EPOCHS, cfg.epochs * 2), **_scaled_step_cap(cfg, 2)},
                  "underfit (answer NLL not low enough): doubling the epochs")


def _scaled_step_cap(cfg: Training, factor: float) -> dict[str, int]:
    """{"max_steps": scaled} when the job caps the steps (the cap, not the epochs, sets the length), else {}."""
    return {"max_steps": max(1, round(cfg.max_steps * factor))} if cfg.max_steps else {}


def faster_training(cfg: Training) -> Remedy:
    return Remedy("trainer", "training", {"learning_rate": min(1e-3, cfg.learning_rate * 2)},
                  "underfit at the epoch cap: doubling the learning rate")


# -- the menu a chat model may choose from --------------------------------------------------------

def remedy_menu(spec: JobSpec, train_examples: int) -> dict[str, Remedy]:
    """Every remedy the policy allows for this situation, by id, each within the policy's bounds.
    Too little data: the data remedies; failed gates: the training remedies that still change something."""
    if train_examples < spec.gates.min_train_examples:
        menu = {"richer_data": richer_data(spec, train_examples),
                "widen_curation": widen_curation(spec, train_examples),
                "widen_research": widen_research(spec, train_examples)}
    else:
        cfg = spec.training
        menu = {"gentler_training": gentler_training(cfg),
                "shorter_training": shorter_training(cfg) if cfg.epochs > 1 or cfg.lora_dropout < 0.3 else None,
                "longer_training": longer_training(cfg) if cfg.epochs < MAX_EPOCHS else None,
                "faster_training": faster_training(cfg) if cfg.learning_rate < 1e-3 else None,
                "stricter_generation": stricter_generation(spec) if can_regenerate(spec) else None,
                "more_document_rows": more_document_rows(spec) if not spec.dataset else None}
    return {key: remedy for key, remedy in menu.items() if remedy is not None}


def describe_menu(menu: dict[str, Remedy]) -> str:
    """One line per remedy for the prompt: id, route, changes and the policy's reason."""
    return "\n".join(f"- {key}: back to {r.route}, {r.section} changes {r.changes}; {r.reason}"
                     for key, r in menu.items())


def describe_situation(metrics: dict[str, Any], val_history: Sequence[float]) -> str:
    """Numbers and gate names only (no text from documents or model outputs) for the prompt."""
    lines = [f"{key}: {value}" for key, value in metrics.items() if not isinstance(value, dict)]
    lines += [f"{side} model: {_numbers(metrics.get(side))}" for side in ("base", "tuned") if metrics.get(side)]
    lines += [f"validation loss by evaluation: {[round(v, 4) for v in val_history]}"]
    return "\n".join(lines)


def _numbers(scores: dict[str, Any] | None) -> dict[str, float]:
    return {k: round(v, 4) for k, v in (scores or {}).items() if isinstance(v, int | float) and not isinstance(v, bool)}


def pick_remedy(model: Any, menu: dict[str, Remedy], default: Remedy, situation: str) -> tuple[Remedy, dict[str, Any]]:
    """The chat model's pick from the menu when it answers well; the policy's `default` otherwise.
    Returns the remedy and how it was chosen ({"chosen_by", "choice_reason"})."""
    default_id = next((key for key, remedy in menu.items() if remedy == default), "policy_remedy")
    menu = {**menu, default_id: default}
    if len(menu) < 2:
        return default, {"chosen_by": "policy", "choice_reason": "only one remedy applies"}
    decision = structured_decision(model, remedy_choice_schema(list(menu)), "choose_remedy", 1,
                                   situation=situation, candidates=describe_menu(menu), default=default_id)
    if not decision.ok:
        return default, {"chosen_by": "policy", "choice_reason": decision.reason}
    choice = decision.value
    return menu[choice.choice], {"chosen_by": "chat model", "choice_reason": choice.reason or decision.reason,
                                 "policy_choice": default_id}
