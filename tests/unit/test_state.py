"""The job state's typed results survive the checkpointer: stored and read back as the same models
(through the strict serializer the service uses), and given back as plain data on request."""

import ormsgpack
import pytest
from job_results import dataset_summary, evaluation_result, gate, remedy_record, training_summary

from graphs.checkpointer import GraphCheckpointRefused, StrictSerializer
from graphs.spec import JobSpec
from graphs.state import CHECKPOINT_TYPES, DatasetSummary, RemedyMeasurements, RoundRecord, plain_state
from tools.stores.model_registry import ModelVersion


def version() -> ModelVersion:
    return ModelVersion(name="ft-x-v1", family="ft-x", version=1, base_model="smollm2-135m",
                        base_model_path="/m", subject="x", status="staging", gates_passed=True,
                        adapter_path="/a", merged_path=None, card_path="/a/README.md", dataset_hash="abc",
                        job_id="job-1", round=1, created_at="2026-12-01T00:00:00+00:00", sources=[],
                        config={}, metrics={})


def a_state() -> dict:
    dataset = dataset_summary(counts={"train": 8, "val": 1, "test": 1}, train_rows=12,
                              difficulty={None: 3, "easy": 7}, **{"yield": 0.5})
    return {"job_id": "job-1", "spec": JobSpec(subject="quantum error correction"), "round": 1,
            "dataset": dataset, "training": training_summary(val_history=[2.0, 1.9]),
            "evaluation": evaluation_result(gates=[gate("answer_nll", False, value=0.01)], passed=False),
            "rounds": [RoundRecord(round=1, config={"epochs": 3.0}, base={"answer_nll": 2.0},
                                   tuned={"answer_nll": 1.9}, passed=False)],
            "remedies": [remedy_record("trainer", metrics_before=RemedyMeasurements(
                failed_gates=["answer_nll"], tuned={"answer_nll": 1.9}, base={"answer_nll": 2.0}))],
            "model": version()}


def test_every_typed_result_comes_back_from_a_checkpoint_as_itself():
    serde, state = StrictSerializer(), a_state()
    back = serde.loads_typed(serde.dumps_typed(state))
    assert back == state
    assert isinstance(back["dataset"], DatasetSummary) and back["dataset"].training_rows == 12
    assert back["dataset"].yield_fraction == 0.5 and back["evaluation"].failed_gates[0].name == "answer_nll"
    assert isinstance(back["model"], ModelVersion) and back["spec"].training.epochs == state["spec"].training.epochs
    measured = back["remedies"][0].metrics_before
    assert isinstance(measured, RemedyMeasurements) and measured.failed_gates == ["answer_nll"]
    assert measured.base == {"answer_nll": 2.0} and measured.train_examples is None


def test_the_critics_measurements_are_typed_and_say_only_what_was_measured():
    too_little = remedy_record(metrics_before={"train_examples": 3}).metrics_before  # as older records hold it
    assert isinstance(too_little, RemedyMeasurements) and too_little.train_examples == 3
    assert too_little.situation() == {"train_examples": 3} and too_little.failed_gates == []
    with pytest.raises(ValueError, match="failed_gate"):
        RemedyMeasurements(failed_gate=["answer_nll"])  # a misspelt measurement is refused


def test_a_checkpoint_naming_another_class_of_the_state_module_is_refused():
    blob = ormsgpack.packb(ormsgpack.Ext(5, ormsgpack.packb(("graphs.state", "JobState", {}, "x"))))
    assert ("graphs.state", "JobState") not in CHECKPOINT_TYPES
    with pytest.raises(GraphCheckpointRefused, match="graphs.state.JobState"):
        StrictSerializer().loads_typed(("msgpack", blob))


def test_plain_state_is_the_results_as_dicts():
    plain = plain_state(a_state())
    assert plain["dataset"]["yield"] == 0.5 and plain["dataset"]["counts"]["train"] == 8
    assert plain["evaluation"]["gates"][0] == {"name": "answer_nll", "passed": False, "value": 0.01,
                                               "threshold": None, "detail": "answer_nll checked"}
    assert plain["rounds"][0]["round"] == 1 and plain["remedies"][0]["route"] == "trainer"
    assert plain["model"]["name"] == "ft-x-v1" and plain["spec"]["subject"] == "quantum error correction"


def test_resuming_a_job_saved_by_an_older_build_says_so(home, tiny_model_dir, tmp_path):
    """A checkpoint whose results are plain dicts (written before the state was typed) is refused with a
    sentence saying what to do, not an AttributeError from inside a node."""
    import sqlite3

    from agent.service import JobFailed, JobService
    from agent.settings import resolve_settings
    from graphs.checkpointer import CheckpointFromOlderBuild, sqlite_checkpointer
    from graphs.graph import build_graph
    from graphs.spec import build_spec

    service = JobService(resolve_settings({}))
    options = {"base_model": str(tiny_model_dir), "docs_path": str(tmp_path)}
    record = service.submit("fine-tune on quantum error correction", options, owner="alice")
    connection = sqlite3.connect(home / "ftagent.sqlite")
    old = {"job_id": record.job_id, "request": record.request, "status": "running", "round": 0,
           "spec": build_spec(record.request, options).model_dump()}  # how older builds saved it
    build_graph(sqlite_checkpointer(connection)).update_state(
        {"configurable": {"thread_id": record.job_id}}, old, as_node="researcher")
    connection.commit()
    connection.close()
    with pytest.raises(JobFailed) as failed:
        service.resume(record.job_id)
    assert isinstance(failed.value.error, CheckpointFromOlderBuild)
    assert "written by an older ftagent" in str(failed.value.error)
    assert "older ftagent" in service.jobs.get(record.job_id).error
