"""Routers are pure functions: a table of states and the node each must choose."""

import pytest

from graphs import routing

SPEC = {"max_rounds": 1, "gates": {"min_train_examples": 16}}


def state(**fields):
    return {"spec": SPEC, "remedies": [], **fields}


@pytest.mark.parametrize(("router", "fields", "expected"), [
    (routing.after_intake, {}, "researcher"),
    (routing.after_intake, {"spec": {**SPEC, "dataset": "/data/own.jsonl"}}, "import_dataset"),
    (routing.after_research, {"documents": [{"doc_id": "a"}]}, "curator"),
    (routing.after_research, {"documents": []}, "stop_without_model"),
    (routing.after_curation, {"curation": {"chunks_kept": 5}}, "generator"),
    (routing.after_curation, {"curation": {"chunks_kept": 0}}, "critic"),
    (routing.after_curation, {"curation": {"chunks_kept": 0}, "remedies": [{}]}, "stop_without_model"),
    (routing.after_generation, {"dataset": {"counts": {"train": 16}}}, "trainer"),
    (routing.after_generation, {"dataset": {"counts": {"train": 3}}}, "critic"),
    (routing.after_generation, {"dataset": {"counts": {"train": 3}}, "remedies": [{}]}, "stop_without_model"),
    (routing.after_evaluation, {"evaluation": {"passed": True}}, "deployer"),
    (routing.after_evaluation, {"evaluation": {"passed": False}}, "critic"),
    (routing.after_evaluation, {"evaluation": {"passed": False}, "remedies": [{}]}, "deployer"),
    (routing.after_critic, {"remedies": [{"route": "trainer"}]}, "trainer"),
    (routing.after_critic, {"remedies": [{"route": "curator"}]}, "curator"),
])
def test_router_table(router, fields, expected):
    assert router(state(**fields)) == expected
