"""`ftagent run` is a job like any other: claimed at creation (no worker takes it), it waits for the home's
training lock, and `ftagent cancel` from another process stops it within seconds (real subprocesses),
even in the middle of a phase that writes no events for minutes (curation embeds every chunk)."""

from __future__ import annotations

import fcntl
import json
import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

from tiny_job import SUBJECT_SENTENCE, small_corpus

from tools.stores.job_store import JobStore

REPO = Path(__file__).resolve().parents[1]


def _cli(home: Path, *args: str, **popen) -> subprocess.Popen:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false", "PYTHONPATH": str(REPO)}
    return subprocess.Popen([sys.executable, "-m", "agent.cli", "--home", str(home), *args], cwd=REPO, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, **popen)


def _events(home: Path, job_id: str) -> list[dict]:
    path = home / "jobs" / job_id / "events.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def _first_job(home: Path):
    if not (home / "ftagent.sqlite").exists():
        return None
    try:
        return next(iter(JobStore(home / "ftagent.sqlite").list()), None)
    except sqlite3.Error:  # the other process is still creating the database
        return None


def _wait(predicate, seconds: float, what: str, process: subprocess.Popen):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if (found := predicate()):
            return found
        assert process.poll() is None, f"ftagent run exited early while waiting for {what}: {process.stdout.read()}"
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def test_ftagent_run_waits_for_the_training_lock_and_stops_when_cancelled(home, tiny_model_dir, tmp_path):
    home.mkdir(parents=True)
    docs = small_corpus(tmp_path / "docs")
    lock = (home / "training.lock").open("a")
    fcntl.flock(lock, fcntl.LOCK_EX)  # another job is training in this home
    run = _cli(home, "run", SUBJECT_SENTENCE, "--model", str(tiny_model_dir), "--docs", str(docs),
               "--max-steps", "5000", "--epochs", "50", "--max-rounds", "0")
    try:
        job = _wait(lambda: _first_job(home), 60, "the job row", run)
        store = JobStore(home / "ftagent.sqlite")
        assert job.status == "running" and job.pid == run.pid  # claimed at creation: no worker can take it
        _wait(lambda: any(e["kind"] == "waiting" for e in _events(home, job.job_id)), 60, "the lock wait", run)
        time.sleep(1)
        assert not any(e["phase"] == "intake" for e in _events(home, job.job_id))  # nothing ran beside the lock
        fcntl.flock(lock, fcntl.LOCK_UN)
        _wait(lambda: any(e["phase"] == "researcher" and e["kind"] == "phase" for e in _events(home, job.job_id)),
              240, "the documents read (curation starts)", run)
        cancel = _cli(home, "cancel", job.job_id)
        assert cancel.wait(60) == 0, cancel.stdout.read()
        asked = time.monotonic()
        run.wait(30)
        stopped_after = time.monotonic() - asked
        output = run.stdout.read()
        events = _events(home, job.job_id)
        timeline = [(round(e["ts"] - events[0]["ts"], 1), e["kind"]) for e in events[-4:]]
        assert stopped_after < 10, (stopped_after, timeline)
        assert run.returncode == 3 and "cancelled" in output, output
        assert store.get(job.job_id).status == "cancelled"
        assert events[-1]["kind"] == "cancelled"
        assert not any(e["phase"] in ("generator", "trainer") for e in events)  # stopped inside curation
    finally:
        lock.close()
        if run.poll() is None:
            run.kill()
            run.wait(10)
