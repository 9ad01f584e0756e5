"""A job killed with SIGKILL in a real subprocess resumes where it stopped: training continues from its
last checkpoint (the step count goes on) and no document is read again."""

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import ormsgpack

from graphs.checkpointer import sqlite_checkpointer
from graphs.graph import build_graph

REPO = Path(__file__).resolve().parents[2]
DEMO = REPO / "tools" / "eval_sets" / "demo_corpus"
STEPS = 80

START_JOB = """
import json, sys
from agent.service import JobService
from agent.settings import resolve_settings
service = JobService(resolve_settings({{"home": {home!r}}}))
record = service.submit("fine-tune a model on quantum error correction", json.loads({options!r}))
print(record.job_id, flush=True)
service.run(record.job_id)
"""


def _options(model_dir: Path, max_steps: int) -> dict:
    return {"base_model": str(model_dir), "docs_path": str(DEMO),
            "training": {"max_steps": max_steps, "checkpoint_every": 3, "precision": "fp32", "batch_size": 4},
            "evaluation": {"generate_limit": 2, "max_new_tokens": 6, "general_texts": 4},
            "gates": {"min_nll_improvement": 0.0, "max_general_ppl_increase": 10.0}}


def _start(home: Path, options: dict) -> tuple[subprocess.Popen, str]:
    code = START_JOB.format(home=str(home), options=json.dumps(options))
    process = subprocess.Popen([sys.executable, "-c", code], cwd=REPO, stdout=subprocess.PIPE,
                               stderr=subprocess.DEVNULL, text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    return process, process.stdout.readline().strip()


def _wait_for(condition, process: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert process.poll() is None, "the job ended before it could be killed"
        assert time.monotonic() < deadline, "timed out waiting"
        time.sleep(0.02)


def _events(home: Path, job_id: str) -> list[dict]:
    path = home / "jobs" / job_id / "events.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def _resume(home: Path, job_id: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "agent.cli", "--home", str(home), "resume", job_id],
                          check=False, cwd=REPO,
                          capture_output=True, text=True, timeout=600, env={**os.environ, "HF_HUB_OFFLINE": "1"})


def _documents_read(events: list[dict]) -> int:
    return sum(1 for e in events if e["phase"] == "researcher" and e["kind"] == "phase")


def test_sigkill_during_training_resumes_from_checkpoint(tiny_model_dir, tmp_path):
    process, job_id = _start(tmp_path, _options(tiny_model_dir, max_steps=STEPS))
    checkpoints = tmp_path / "jobs" / job_id / "checkpoints" / "round-1"
    _wait_for(lambda: any(checkpoints.glob("step-*")), process)
    process.send_signal(signal.SIGKILL)
    process.wait()
    killed_at = max(int(p.name.split("-")[1]) for p in checkpoints.glob("step-*"))
    assert killed_at < STEPS

    status = subprocess.run([sys.executable, "-m", "agent.cli", "--home", str(tmp_path), "status", job_id],
                            check=False, cwd=REPO, capture_output=True, text=True, timeout=120)
    assert "interrupted" in status.stdout

    finished = _resume(tmp_path, job_id)
    assert finished.returncode == 0, finished.stdout + finished.stderr
    events = _events(tmp_path, job_id)
    at = next(i for i, e in enumerate(events) if e["message"] == "resumed from checkpoint")
    assert events[at]["data"]["step"] >= killed_at
    # by position in the log: two events can share one millisecond time stamp
    steps_after = [e["data"]["step"] for e in events[at + 1 :] if e["kind"] == "step"]
    assert steps_after[0] == events[at]["data"]["step"] + 1 and steps_after[-1] == STEPS
    assert _documents_read(events) == 1  # no document was read again
    assert "registered" in finished.stdout


def _next_nodes(home: Path, job_id: str) -> tuple[str, ...]:
    """What the job's last checkpoint says runs next (read from the SQLite checkpointer)."""
    if not (home / "ftagent.sqlite").exists():
        return ()
    connection = sqlite3.connect(home / "ftagent.sqlite")
    try:
        return build_graph(sqlite_checkpointer(connection)).get_state({"configurable": {"thread_id": job_id}}).next
    finally:
        connection.close()


def _plant_in_newest_checkpoint(home: Path, job_id: str, command: str) -> tuple[str, bytes]:
    """Rewrite the job's newest graph checkpoint row as an attacker with write access to the home would:
    a msgpack extension that LangGraph's permissive decoding turns into os.system(command)."""
    connection = sqlite3.connect(home / "ftagent.sqlite")
    with connection:
        checkpoint_id, blob = connection.execute(
            "SELECT checkpoint_id, checkpoint FROM checkpoints WHERE thread_id = ? ORDER BY checkpoint_id DESC "
            "LIMIT 1", (job_id,)).fetchone()
        # the typed results are msgpack extensions too: kept as they are, only the request is replaced
        checkpoint = ormsgpack.unpackb(blob, ext_hook=ormsgpack.Ext, option=ormsgpack.OPT_NON_STR_KEYS)
        checkpoint["channel_values"]["request"] = ormsgpack.Ext(1, ormsgpack.packb(["os", "system", [command]]))
        connection.execute("UPDATE checkpoints SET checkpoint = ? WHERE thread_id = ? AND checkpoint_id = ?",
                           (ormsgpack.packb(checkpoint, option=ormsgpack.OPT_NON_STR_KEYS), job_id, checkpoint_id))
    connection.close()
    return checkpoint_id, blob


def _restore_checkpoint(home: Path, job_id: str, checkpoint_id: str, blob: bytes) -> None:
    connection = sqlite3.connect(home / "ftagent.sqlite")
    with connection:
        connection.execute("UPDATE checkpoints SET checkpoint = ? WHERE thread_id = ? AND checkpoint_id = ?",
                           (blob, job_id, checkpoint_id))
    connection.close()


def test_sigkill_during_generation_resumes_without_reading_documents_again(tiny_model_dir, tmp_path):
    """Also: a crafted checkpoint row is refused on resume (nothing runs, the error says what to do), and
    the real rows still load (the job resumes once the row is put back)."""
    process, job_id = _start(tmp_path, _options(tiny_model_dir, max_steps=4))
    _wait_for(lambda: "generator" in _next_nodes(tmp_path, job_id), process)
    process.send_signal(signal.SIGKILL)
    process.wait()

    marker = tmp_path / "ran"
    planted = _plant_in_newest_checkpoint(tmp_path, job_id, f"touch {marker}")
    refused = _resume(tmp_path, job_id)
    assert refused.returncode != 0 and not marker.exists()
    said = " ".join((refused.stdout + refused.stderr).split())
    assert "refused to load a graph checkpoint: it asks to build os.system" in said, said
    assert "delete this job's saved graph state" in said and "Traceback" not in said
    _restore_checkpoint(tmp_path, job_id, *planted)

    finished = _resume(tmp_path, job_id)
    assert finished.returncode == 0, finished.stdout + finished.stderr
    events = _events(tmp_path, job_id)
    assert _documents_read(events) == 1
    assert sum(1 for e in events if e["phase"] == "curator" and e["kind"] == "phase") == 1
    assert any(e["phase"] == "deployer" for e in events)
