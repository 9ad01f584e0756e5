"""Shared state on a real PostgreSQL server (a throwaway cluster from tests/helpers/postgres_cluster.py):
the
registry, feedback and jobs tables, queue claims with SKIP LOCKED, three `ftagent worker` processes
on one queue, a killed worker's job taken over after its lease, and a tiny job end to end."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import psycopg
import pytest
from tiny_job import SUBJECT_SENTENCE, small_corpus, tiny_job_options

from agent.service import JobService
from agent.settings import resolve_settings
from tools.stores.databases import open_job_store
from tools.stores.feedback import FeedbackStore
from tools.stores.job_store_postgres import PostgresJobStore
from tools.stores.model_registry import ModelRegistry, ModelVersion, RegistryRefusal

REPO = Path(__file__).resolve().parents[2]


def _version(name: str, version: int, status: str = "staging") -> ModelVersion:
    return ModelVersion(
        name=name,
        family="ft-tiny-qec",
        version=version,
        base_model="tiny",
        base_model_path="/m",
        subject="quantum error correction",
        status=status,
        gates_passed=True,
        adapter_path=f"/a/{name}",
        merged_path=None,
        card_path=f"/c/{name}.md",
        dataset_hash="abc",
        job_id=f"job-{version}",
        round=1,
        created_at=f"2026-01-0{version}",
        sources=[{"title": "Shor code"}],
        config={"lora_r": 8},
        metrics={"tuned": {"nll": 1.5}},
    )


def test_registry_and_feedback_round_trip_on_postgres(postgres_url):
    registry = ModelRegistry(postgres_url)
    assert registry.next_version("ft-tiny-qec") == 1
    registry.register(_version("ft-tiny-qec-v1", 1))
    registry.register(_version("ft-tiny-qec-v2", 2))
    assert registry.next_version("ft-tiny-qec") == 3
    assert registry.get("ft-tiny-qec-v1") == _version(
        "ft-tiny-qec-v1", 1
    )  # JSON fields and booleans survive
    registry.set_status("ft-tiny-qec-v1", "production")
    registry.set_status("ft-tiny-qec-v2", "production")  # archives v1
    demoted, restored = ModelRegistry(postgres_url).rollback(
        "ft-tiny-qec"
    )  # a second client sees the same rows
    assert (demoted.name, restored.name, restored.status) == (
        "ft-tiny-qec-v2",
        "ft-tiny-qec-v1",
        "production",
    )
    with pytest.raises(RegistryRefusal):
        registry.delete("ft-tiny-qec-v1")
    assert registry.find_by_job("job-2", 1).name == "ft-tiny-qec-v2"
    feedback = FeedbackStore(postgres_url)
    first = feedback.add(
        "ft-tiny-qec-v1", "What is a qubit?", "A bit.", -1, "A two-level quantum system.", "alice"
    )
    second = feedback.add(
        "ft-tiny-qec-v2", "What is 50% of 2?", "1", 1
    )  # a % in a value is data, not a format
    assert (first.feedback_id, second.feedback_id) == (1, 2)
    assert [f.to_dict() for f in feedback.list("ft-tiny-qec-v1")] == [first.to_dict()]
    assert feedback.list()[1].question == "What is 50% of 2?" and feedback.list()[0].user == "alice"


def test_the_database_setting_takes_only_postgres_urls(tmp_path):
    settings = resolve_settings(
        {"home": str(tmp_path)}, environ={"FTAGENT_DATABASE_URL": "postgresql://db/ft"}
    )
    assert settings.database == "postgresql://db/ft"
    assert (
        resolve_settings({"home": str(tmp_path)}, environ={}).database
        == tmp_path / "ftagent.sqlite"
    )
    with pytest.raises(ValueError, match="must be a postgresql:// URL .* not mysql://"):
        resolve_settings({"home": str(tmp_path)}, environ={"FTAGENT_DATABASE_URL": "mysql://db/ft"})


def test_concurrent_claims_hand_out_each_job_once(postgres_url):
    stores = [open_job_store(postgres_url, lease_s=6) for _ in range(4)]
    assert all(isinstance(store, PostgresJobStore) and store.shared for store in stores)
    for number in range(20):
        stores[0].create(f"job-{number:02d}", "fine-tune on x", {"n": number})

    def drain(store: PostgresJobStore) -> list[str]:
        taken = []
        while (record := store.claim_next(os.getpid())) is not None:
            taken.append(record.job_id)
        return taken

    with ThreadPoolExecutor(4) as pool:
        claimed = [job for taken in pool.map(drain, stores) for job in taken]
    assert sorted(claimed) == [f"job-{n:02d}" for n in range(20)]  # every job once, none twice
    assert {stores[1].get(job).status for job in claimed} == {"running"}
    assert {stores[2].lease(job).attempts for job in claimed} == {1}
    for job in claimed:
        stores[0].update(job, status="succeeded")  # the lease keepers stop renewing them


def test_an_expired_lease_makes_a_running_job_claimable_again(postgres_url):
    crashed, survivor = (
        PostgresJobStore(postgres_url, lease_s=6),
        PostgresJobStore(postgres_url, lease_s=6),
    )
    crashed.worker = "other-host:4242"  # a worker on another host, whose pid means nothing here
    crashed.create("job-a", "fine-tune on x", {})
    crashed.create("job-b", "fine-tune on y", {})
    assert crashed.claim_next(4242).job_id == "job-a"
    with psycopg.connect(
        postgres_url, autocommit=True
    ) as connection:  # its lease runs out (no renewals)
        connection.execute(
            "UPDATE jobs SET lease_expires = now() - interval '1 second' WHERE job_id = 'job-a'"
        )
    assert survivor.get("job-a").status == "interrupted"
    assert survivor.claim_next(os.getpid()).job_id == "job-a"  # interrupted jobs go first
    lease = survivor.lease("job-a")
    assert (lease.worker, lease.attempts, lease.expired) == (survivor.worker, 2, False)
    assert survivor.claim_next(os.getpid()).job_id == "job-b"
    assert survivor.claim_next(os.getpid()) is None
    for job in ("job-a", "job-b"):
        survivor.update(job, status="succeeded")


def _worker(
    home: Path, database_url: str, lease_s: float = 60, **environment: str
) -> subprocess.Popen:
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO),
        "FTAGENT_HOME": str(home),
        "FTAGENT_DATABASE_URL": database_url,
        "FTAGENT_JOB_LEASE": str(lease_s),
        "FTAGENT_THREADS": "1",
        **environment,
    }
    return subprocess.Popen(
        [sys.executable, "-m", "agent.cli", "worker", "--once"],
        env=env,
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def _intake_runs(home: Path, job_id: str) -> int:
    events = [
        json.loads(line)
        for line in (home / "jobs" / job_id / "events.jsonl").read_text().splitlines()
    ]
    return sum(1 for e in events if e["phase"] == "intake" and e["kind"] == "phase")


def test_three_workers_on_postgres_run_twenty_jobs_none_twice(postgres_url, tmp_path):
    home, empty = tmp_path / "shared-home", tmp_path / "no-documents"
    empty.mkdir()
    service = JobService(resolve_settings({"home": str(home), "database_url": postgres_url}))
    # Jobs that stop fast (no documents, after intake and the researcher): the test is about the
    # queue.
    topics = [f"topic {chr(97 + n)}{chr(97 + n)}" for n in range(20)]
    jobs = [
        service.submit(f"fine-tune on {topic}", {"docs_path": str(empty)}).job_id
        for topic in topics
    ]
    workers = [_worker(home, postgres_url) for _ in range(3)]
    outputs = [worker.communicate(timeout=240)[0] for worker in workers]
    assert [w.returncode for w in workers] == [0, 0, 0], outputs
    records = [service.jobs.get(job) for job in jobs]
    assert {r.status for r in records} == {"failed"}, [r.error for r in records]
    assert all("no documents" in (r.outcome or "") for r in records), [
        (r.outcome, r.error) for r in records
    ]
    leases = [service.jobs.lease(job) for job in jobs]
    assert [lease.attempts for lease in leases] == [1] * 20
    assert [_intake_runs(home, job) for job in jobs] == [1] * 20  # each job's graph ran once
    per_worker = {}
    for lease in leases:
        per_worker[lease.worker] = per_worker.get(lease.worker, 0) + 1
    ran = sorted(int(text.rsplit("ran ", 1)[1].split()[0]) for text in outputs)
    assert sum(ran) == 20 and sorted(per_worker.values()) == [n for n in ran if n]


class StallingArxiv:
    """A local stand-in for the arXiv API that holds every request until `release()`, then answers
    404:
    a worker is caught mid-job (in the researcher) for as long as the test needs."""

    def __init__(self) -> None:
        self.released = threading.Event()
        self.requested = threading.Event()
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                stub.requested.set()
                stub.released.wait(120)
                try:
                    self.send_response(404)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                except OSError:
                    pass  # the worker that asked was killed

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/api/query"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.released.set()
        self.server.shutdown()


def test_a_killed_workers_job_is_taken_over_after_its_lease_and_resumes(postgres_url, tmp_path):
    home, arxiv = tmp_path / "shared-home", StallingArxiv()
    service = JobService(resolve_settings({"home": str(home), "database_url": postgres_url}))
    job = service.submit("fine-tune on surface codes", {"sources": ["arxiv"]}).job_id
    sources = {
        "FTAGENT_ARXIV_URL": arxiv.url,
        "FTAGENT_HTTP_RETRIES": "0",
        "FTAGENT_HTTP_TIMEOUT": "120",
    }
    try:
        doomed = _worker(home, postgres_url, lease_s=2, **sources)
        assert arxiv.requested.wait(120), "the first worker never reached the researcher"
        held = service.jobs.lease(job)
        assert service.jobs.get(job).status == "running" and held.attempts == 1
        time.sleep(2.5)
        assert service.jobs.get(job).status == "running"  # a live worker renews its lease
        doomed.send_signal(signal.SIGKILL)
        doomed.wait(10)
        arxiv.released.set()
        deadline = time.monotonic() + 10
        while service.jobs.get(job).status == "running" and time.monotonic() < deadline:
            time.sleep(0.2)
        assert service.jobs.get(job).status == "interrupted"  # the lease ran out
        survivor = _worker(home, postgres_url, lease_s=2, **sources)
        output = survivor.communicate(timeout=240)[0]
    finally:
        arxiv.close()
    assert survivor.returncode == 0 and "ran 1 job" in output, output
    record, lease = service.jobs.get(job), service.jobs.lease(job)
    assert record.status == "failed" and "no documents" in record.outcome
    assert (
        lease.attempts == 2
        and lease.worker != held.worker
        and lease.worker.endswith(f":{survivor.pid}")
    )
    assert (
        _intake_runs(home, job) == 1
    )  # resumed from the checkpoint after intake, not started over


def test_a_tiny_job_on_postgres_leaves_job_checkpoint_and_registry_rows(
    postgres_url, tiny_model_dir, tmp_path
):
    home = tmp_path / "home"
    service = JobService(resolve_settings({"home": str(home), "database_url": postgres_url}))
    record = service.submit(
        SUBJECT_SENTENCE, tiny_job_options(tiny_model_dir, small_corpus(tmp_path / "docs"))
    )
    state = service.run(record.job_id)
    assert state["status"] == "succeeded", state.get("outcome")
    assert not (home / "ftagent.sqlite").exists()  # nothing went to the embedded database
    with psycopg.connect(postgres_url) as connection:

        def count(sql: str) -> int:
            return connection.execute(sql, (record.job_id,)).fetchone()[0]

        assert count("SELECT count(*) FROM jobs WHERE job_id = %s AND status = 'succeeded'") == 1
        assert count("SELECT count(*) FROM checkpoints WHERE thread_id = %s") > 5
        assert count("SELECT count(*) FROM model_versions WHERE job_id = %s") == 1
    assert service.model(state["model"].name).job_id == record.job_id
    assert (
        service.state(record.job_id)["status"] == "succeeded"
    )  # read back through the Postgres checkpointer


def test_the_cli_names_a_bad_or_unreachable_database_without_its_password(
    monkeypatch, tmp_path, capsys
):
    from postgres_cluster import free_port

    from agent.cli import EXIT_BAD_INPUT, EXIT_ENVIRONMENT, main

    monkeypatch.setenv("FTAGENT_DATABASE_URL", "mysql://db/ft")
    assert main(["--home", str(tmp_path), "status"]) == EXIT_BAD_INPUT
    assert "must be a postgresql:// URL" in capsys.readouterr().out
    monkeypatch.setenv(
        "FTAGENT_DATABASE_URL", f"postgresql://bob:s3cret@127.0.0.1:{free_port()}/ft"
    )
    assert main(["--home", str(tmp_path), "status"]) == EXIT_ENVIRONMENT
    said = capsys.readouterr().out
    assert (
        "cannot reach the database postgresql://bob:***@127.0.0.1" in said and "s3cret" not in said
    )


def test_api_tokens_and_slack_replays_on_postgres(postgres_url):
    from agent.slack_bot import SeenRequests
    from tools.stores.api_tokens import TokenStore

    tokens = TokenStore(postgres_url)
    secret = tokens.add("alice", admin=True)
    assert [t.name for t in tokens.list()] == ["alice"]
    assert tokens.caller(secret).user == "alice"
    seen = SeenRequests(postgres_url)
    assert seen.first_time("event-1", now=100.0) and not seen.first_time("event-1", now=101.0)
