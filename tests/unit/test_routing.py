"""Routers are pure functions: a table of states and the node each must choose."""

import pytest
from job_results import curation_summary, dataset_summary, evaluation_result, remedy_record

from graphs import routing
from graphs.spec import Gates, JobSpec
from graphs.state import DatasetSummary

SPEC = JobSpec(subject="quantum error correction", max_rounds=1, gates=Gates(min_train_examples=16))


def state(**fields):
    return {"spec": SPEC, "remedies": [], **fields}


def curation(kept: int):
    return curation_summary(chunks_in=kept, chunks_kept=kept)


def dataset(train: int):
    return dataset_summary(counts={"train": train})


@pytest.mark.parametrize(("router", "fields", "expected"), [
    (routing.after_intake, {}, "researcher"),
    (routing.after_intake, {"spec": SPEC.model_copy(update={"dataset": "/data/own.jsonl"})}, "import_dataset"),
    (routing.after_research, {"documents": [{"doc_id": "a"}]}, "curator"),
    (routing.after_research, {"documents": []}, "stop_without_model"),
    (routing.after_curation, {"curation": curation(5)}, "generator"),
    (routing.after_curation, {"curation": curation(0)}, "critic"),
    (routing.after_curation, {"curation": curation(0), "remedies": [remedy_record()]}, "stop_without_model"),
    (routing.after_generation, {"dataset": dataset(16)}, "trainer"),
    (routing.after_generation, {"dataset": dataset(3)}, "critic"),
    (routing.after_generation, {"dataset": dataset(3), "remedies": [remedy_record()]}, "stop_without_model"),
    (routing.after_evaluation, {"evaluation": evaluation_result(passed=True)}, "deployer"),
    (routing.after_evaluation, {"evaluation": evaluation_result(passed=False)}, "critic"),
    (routing.after_evaluation, {"evaluation": evaluation_result(passed=False), "remedies": [remedy_record()]},
     "deployer"),
    (routing.after_critic, {"remedies": [remedy_record("trainer")]}, "trainer"),
    (routing.after_critic, {"remedies": [remedy_record("curator")]}, "curator"),
])
def test_router_table(router, fields, expected):
    assert router(state(**fields)) == expected


def test_training_rows_count_document_rows_when_the_dataset_has_them():
    """The generator's datasets train on QA and document rows; the user's own dataset on its train split."""
    assert DatasetSummary(paths={}, counts={"train": 3}, hash="h", train_rows=20).training_rows == 20
    assert routing.after_generation(state(dataset=DatasetSummary(paths={}, counts={"train": 3}, hash="h",
                                                                 train_rows=20))) == "trainer"
