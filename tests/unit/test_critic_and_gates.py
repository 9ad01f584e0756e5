"""Gates and the critic's policy: each failed gate maps to a stated remedy."""

from graphs.critic import remedy_for_gates, remedy_for_too_little_data
from graphs.gates import check_gates
from graphs.spec import Gates, JobSpec

SPEC = JobSpec(subject="quantum error correction")


def test_gates_pass_and_fail_on_thresholds():
    base = {"answer_nll": 2.0, "general_perplexity": 20.0}
    good = check_gates(base, {"answer_nll": 1.8, "general_perplexity": 20.5}, Gates())
    assert [g["passed"] for g in good] == [True, True]
    bad = check_gates(base, {"answer_nll": 1.95, "general_perplexity": 22.0}, Gates())
    assert [g["passed"] for g in bad] == [False, False]
    assert "needs at least 5% lower" in bad[0]["detail"]


def test_no_held_out_examples_fails_the_nll_gate():
    results = check_gates({"answer_nll": None}, {"answer_nll": None}, Gates())
    assert results[0]["passed"] is False and "no held-out" in results[0]["detail"]


def test_general_regression_lowers_learning_rate_first():
    remedy = remedy_for_gates(SPEC, ["general_perplexity", "answer_nll"], [])
    assert remedy.route == "trainer" and remedy.changes["learning_rate"] == SPEC.training.learning_rate / 2


def test_underfit_doubles_epochs_then_learning_rate():
    remedy = remedy_for_gates(SPEC, ["answer_nll"], [2.0, 1.9])
    assert remedy.changes == {"epochs": SPEC.training.epochs * 2}
    capped = SPEC.model_copy(update={"training": SPEC.training.model_copy(update={"epochs": 8.0})})
    # at the epoch cap: the documents read more often first, then a higher learning rate
    richer = remedy_for_gates(capped, ["answer_nll"], [])
    assert richer.route == "generator" and richer.changes["document_share"] > SPEC.generation.document_share
    saturated = capped.model_copy(update={"generation": capped.generation.model_copy(
        update={"document_share": 0.6})})
    assert "learning_rate" in remedy_for_gates(saturated, ["answer_nll"], []).changes


def test_overfit_cuts_epochs_and_adds_dropout():
    remedy = remedy_for_gates(SPEC, ["answer_nll"], [1.5, 1.7])
    assert remedy.changes["epochs"] < SPEC.training.epochs and "overfit" in remedy.reason


def test_too_little_data_asks_more_of_the_text_then_widens_curation():
    richer = remedy_for_too_little_data(SPEC, 3)
    assert richer.route == "generator" and richer.changes["max_per_fact"] == SPEC.generation.max_per_fact + 1
    assert richer.changes["document_share"] > SPEC.generation.document_share
    at_limits = SPEC.model_copy(update={"generation": SPEC.generation.model_copy(
        update={"max_per_fact": 6, "document_share": 0.6})})
    remedy = remedy_for_too_little_data(at_limits, 3)
    assert remedy.route == "curator"
    assert remedy.changes["doc_relevance_threshold"] < SPEC.curation.doc_relevance_threshold
