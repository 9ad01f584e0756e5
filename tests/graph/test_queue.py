"""Service additions (cancel, events, feedback) and the durable queue's worker, on a real tiny job."""

from __future__ import annotations

import json
import subprocess

import pytest
from tiny_job import SUBJECT_SENTENCE, small_corpus, tiny_job_options

from agent.queue import Worker, WorkerBusy, run_job
from agent.service import JobService, NotOwner
from tools.stores.feedback import FeedbackError
from tools.stores.model_registry import RegistryError


def _dead_pid() -> int:
    process = subprocess.Popen(["true"])
    process.wait()
    return process.pid


def test_only_the_owner_cancels_and_a_cancelled_queued_job_never_runs(service, tiny_model_dir, tmp_path):
    record = service.submit(SUBJECT_SENTENCE, tiny_job_options(tiny_model_dir, tmp_path), owner="alice")
    with pytest.raises(NotOwner):
        service.cancel(record.job_id, "bob")
    assert service.cancel(record.job_id, "alice").status == "cancelled"
    assert Worker(service).drain() == []
    assert service.jobs.get(record.job_id).status == "cancelled"
    assert [e["kind"] for e in service.read_events(record.job_id)] == ["cancelled"]


def test_cancelling_a_running_job_stops_it_at_the_next_event(service, tiny_model_dir, tmp_path):
    record = service.submit(SUBJECT_SENTENCE, tiny_job_options(tiny_model_dir, small_corpus(tmp_path / "docs")),
                            owner="alice")

    def cancel_while_researching(event: dict) -> None:
        if event["phase"] == "researcher":
            service.cancel(record.job_id, "alice")

    result = run_job(service, record.job_id, (cancel_while_researching,))
    assert result.status == "cancelled"
    assert service.jobs.get(record.job_id).status == "cancelled"
    events = service.read_events(record.job_id)
    assert events[-1]["kind"] == "cancelled" and "cancel" in [e["kind"] for e in events]
    assert not any(e["phase"] == "curator" for e in events)  # it stopped before curating
    assert service.state(record.job_id)["spec"].subject == "quantum error correction"  # intake kept


def test_events_are_numbered_and_resumable_from_a_position(service, tiny_model_dir, tmp_path):
    record = service.submit(SUBJECT_SENTENCE, tiny_job_options(tiny_model_dir, tmp_path))
    service.cancel(record.job_id)
    first = service.read_events(record.job_id)
    assert [e["seq"] for e in first] == [1]
    assert service.read_events(record.job_id, after=1) == []
    assert list(service.events(record.job_id, follow=True, timeout=5)) == first  # ends: the job is finished


def test_a_second_worker_on_the_same_home_is_refused(service):
    first = Worker(service)
    first.acquire()
    try:
        with pytest.raises(WorkerBusy):
            Worker(JobService(service.settings)).acquire()
    finally:
        first.release()
    Worker(service).acquire()


def test_worker_resumes_an_interrupted_job_then_runs_the_queue_and_feedback_becomes_examples(
        service, tiny_model_dir, tmp_path):
    docs = small_corpus(tmp_path / "docs")
    interrupted = service.submit(SUBJECT_SENTENCE, tiny_job_options(tiny_model_dir, docs), owner="alice")
    service.jobs.update(interrupted.job_id, status="running", pid=_dead_pid())  # its process died
    assert service.jobs.get(interrupted.job_id).status == "interrupted"
    queued = service.submit(SUBJECT_SENTENCE, tiny_job_options(tiny_model_dir, docs, max_rounds=0))
    service.cancel(queued.job_id)  # keep the test short: the queue holds one cancelled job

    results = Worker(service).drain()

    assert [(r.job_id, r.status) for r in results] == [(interrupted.job_id, "succeeded")]
    done = service.status(interrupted.job_id)
    assert done["status"] == "succeeded" and done["model_name"]
    assert any("resuming" in e["message"] for e in service.read_events(interrupted.job_id))

    model = done["model_name"]
    with pytest.raises(FeedbackError):
        service.feedback(model, "What is a stabilizer?", "no idea", rating=7)
    with pytest.raises(RegistryError):
        service.feedback("no-such-model", "q", "a", rating=1)
    service.feedback(model, "What does the surface code protect?", "cheese", rating=-1,
                     correction="Logical qubits, by measuring stabilizers on a 2D lattice.", user="alice")
    service.feedback(model, "Is it good?", "yes", rating=1)
    exported = service.export_corrections(model)
    lines = [json.loads(line) for line in exported.read_text().splitlines()]
    assert len(lines) == 1  # only the corrected answer becomes a training example
    roles = [m["role"] for m in lines[0]["messages"]]
    assert roles == ["system", "user", "assistant"]
    assert lines[0]["messages"][2]["content"].startswith("Logical qubits")
