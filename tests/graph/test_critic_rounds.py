"""The critic loop for real: a tiny job with planted failing gates, and what the next rounds really did.

The base is the tiny model pre-trained on general text: a random model has no general skill to lose (its
general perplexity only falls when it is fine-tuned), so a general regression cannot be planted on it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from tiny_job import GRAPH_JOB, run_job, small_corpus, tiny_job_options
from tiny_model import pretrain_on_general_text

from graphs.critic import remedy_for_gates
from graphs.reports import rounds_section
from graphs.spec import JobSpec
from graphs.state import GateCheck, RemedyRecord, RoundRecord

SPEC = JobSpec(subject="quantum error correction")


@pytest.fixture(scope="module")
def general_base(tiny_model_dir: Path, tmp_path_factory) -> Path:
    return pretrain_on_general_text(tiny_model_dir, tmp_path_factory.mktemp("general-base"))


def events(home: Path, job_id: str) -> list[dict[str, Any]]:
    lines = (home / "jobs" / job_id / "events.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines]


def gate(record: RoundRecord, name: str) -> GateCheck:
    return next(g for g in record.gates if g.name == name)


@pytest.fixture(scope="module")
def regression_job(general_base: Path, tmp_path_factory) -> tuple[Path, dict[str, Any]]:
    """Round 1 at a very high LR really forgets general text; the grounding gate is planted (ROUGE-L 0.99)
    and judged from 4 answers (the test split may hold fewer than 10); NLL needs no gain. Expected: round 2
    at half the LR with general replay passes, then, with grounding still failing, round 3 on data from a
    stricter generator.

    Planted so that it holds on any CPU and precision: the regression grows much faster than the LR
    (measured on an avx512_bf16 CPU, fp32 and bf16 alike: lr 3e-3 +3%, 5e-3 with replay +15%, 1e-2 +78%,
    2e-2 +225%), so the gate sits at the geometric middle between round 1 (lr 1e-2) and round 2 (5e-3 with
    replay), a factor ~2.2 from each. The old plant (lr 3e-3 against a +8% gate) relied on +11..17% measured
    on an AVX2 CPU and gave +3% here, in fp32 and bf16 alike. On an AVX2-only CPU in (emulated) bf16 round 2
    gave +35.7% and +36.9% (round 1 +83% and +81%) in two runs whose data sets differed (each temporary docs
    folder gave its documents other ids, so other documents were held out; fixed since): the gate at +35%
    failed there, 1 run in 5; at +50% it sits 1.6x below round 1 and 1.35x above round 2."""
    home = tmp_path_factory.mktemp("home")
    options = tiny_job_options(general_base, small_corpus(home / "docs"), base=GRAPH_JOB, max_rounds=2,
                               training={"learning_rate": 1e-2}, evaluation={"generate_limit": 10},
                               gates={"min_train_examples": 4, "min_nll_improvement": 0.0,
                                      "max_general_ppl_increase": 0.5, "min_rouge_l": 0.99,
                                      "min_rouge_l_answers": 4})
    return home, run_job(home, "job-regression", options)


def test_general_regression_is_retrained_gentler_with_general_replay(regression_job) -> None:
    home, state = regression_job
    first, second = state["rounds"][0], state["rounds"][1]
    assert not gate(first, "general_perplexity").passed
    remedy = state["remedies"][0]
    assert remedy.route == "trainer" and remedy.metrics_before.failed_gates == [
        "general_perplexity", "answer_rouge_l"]
    assert remedy.before == {"learning_rate": 1e-2, "replay_general": 0.0}
    # what round 2 really trained with
    assert second.config["learning_rate"] == pytest.approx(first.config["learning_rate"] / 2)
    assert (first.replay_examples, first.replay_general) == (0, 0.0)
    train = first.train_examples
    assert second.replay_examples == round(0.1 * train) > 0
    assert second.train_examples == train + second.replay_examples
    replayed = [e["data"]["replayed"] for e in events(home, "job-regression") if "replayed" in e["data"]]
    assert replayed == [r.replay_examples for r in state["rounds"][1:]]  # rounds 2 and 3 replay, round 1 not
    # and it worked: the general regression shrank below the gate's limit
    assert gate(second, "general_perplexity").value < gate(first, "general_perplexity").value
    assert gate(second, "general_perplexity").passed


def test_weak_grounding_regenerates_the_data_with_a_stricter_gate(regression_job) -> None:
    _, state = regression_job
    second, third = state["rounds"][1], state["rounds"][2]
    assert gate(second, "answer_nll").passed and not gate(second, "answer_rouge_l").passed
    remedy = state["remedies"][1]
    assert (remedy.after_round, remedy.route, remedy.section) == (2, "generator", "generation")
    assert remedy.changes["min_quality"] > remedy.before["min_quality"]
    # round 3 trained on regenerated data: fewer examples, every one with the stricter semantic support or
    # passage text word for word (grounded by construction: tools/data/quality.verbatim_span)
    regenerated = [json.loads(line) for split in state["dataset"].paths.values()
                   for line in Path(split).read_text().splitlines()]
    assert len(regenerated) < sum(second.dataset.counts.values())
    assert sum(third.dataset.counts.values()) == len(regenerated)
    floor = remedy.changes["min_semantic_support"]
    assert all(r["metadata"]["quality"]["verbatim"] or r["metadata"]["quality"]["semantic_support"] >= floor
               for r in regenerated)
    assert third.config["learning_rate"] == second.config["learning_rate"] and third.replay_examples > 0
    assert [r.round for r in state["rounds"]] == [1, 2, 3] and state["model"].status == "rejected"


def test_report_shows_every_round_with_why_what_changed_and_before_after(regression_job) -> None:
    home, state = regression_job
    report = (home / "jobs" / "job-regression" / "report.md").read_text()
    rounds = report[report.index("## Rounds"):]
    for number in (1, 2, 3):
        assert f"- round {number}: gates failed" in rounds
    assert "why: failed gates general_perplexity, answer_rouge_l" in rounds
    assert "changed training: learning_rate 0.01 → 0.005, replay_general 0 → 0.1; back to trainer" in rounds
    assert "changed generation: min_quality 0.6 → 0.7" in rounds
    first, second = (gate(r, "general_perplexity") for r in state["rounds"][:2])
    assert f"general_perplexity {first.value:.3f} FAIL → {second.value:.3f} PASS" in rounds
    assert f"incl. {state['rounds'][1].replay_examples} replayed general (10%)" in rounds
    assert rounds.count("base → tuned: answer NLL") == 3 and "no later round was evaluated" not in rounds


# -- the policy's remedies change what the next round really does ---------------------------------

def test_longer_and_shorter_training_scale_a_step_cap() -> None:
    capped = SPEC.model_copy(update={"training": SPEC.training.model_copy(update={"max_steps": 6})})
    longer = remedy_for_gates(capped, ["answer_nll"], []).changes
    assert longer == {"epochs": 2 * SPEC.training.epochs, "max_steps": 12}
    overfit = remedy_for_gates(capped, ["answer_nll"], [1.5, 1.7])
    assert overfit.changes["max_steps"] == 3 and overfit.changes["epochs"] == SPEC.training.epochs / 2
    assert "max_steps" not in remedy_for_gates(SPEC, ["answer_nll"], []).changes


def test_report_lists_data_remedies_taken_before_any_round() -> None:
    """Too little data: the critic widens curation, then research, before round 1 ever trains."""
    remedies = [RemedyRecord(after_round=0, remedy_number=number, reason=reason, section=section, route=route,
                             changes=changes, before=before, metrics_before={"train_examples": count},
                             chosen_by="policy")
                for number, (reason, section, route, changes, before, count) in enumerate((
                    ("too little data; widening curation", "curation", "curator",
                     {"doc_relevance_threshold": 0.2}, {"doc_relevance_threshold": 0.3}, 3),
                    ("too little data; searching more widely", "research", "researcher",
                     {"max_queries": 6}, {"max_queries": 3}, 5)), start=1)]
    lines = rounds_section({"rounds": [], "remedies": remedies})
    assert lines[2:] == [
        "- before round 1: critic: too little data; widening curation (chosen by policy)",
        "  - why: 3 training examples, fewer than the gate needs",
        "  - changed curation: doc_relevance_threshold 0.3 → 0.2; back to curator",
        "- before round 1: critic: too little data; searching more widely (chosen by policy)",
        "  - why: 5 training examples, fewer than the gate needs",
        "  - changed research: max_queries 3 → 6; back to researcher"]
