"""The event log survives torn writes: a kill -9 or a full disk mid-line leaves a job that can still be
read, cancelled and followed; readers tail the file from a byte offset."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from agent.service import JobService
from agent.settings import Settings
from tools.events import EventLog, read_events

REPO = Path(__file__).resolve().parents[2]
DEMO = REPO / "tools" / "eval_sets" / "demo_corpus"


def torn_log(path: Path) -> EventLog:
    """Two whole events, then the first half of a third, as a writer killed mid-line leaves the file."""
    log = EventLog(path)
    log.emit("trainer", "phase", "round 1: training")
    log.emit("trainer", "step", "step 1/4 loss 2.000", step=1, total_steps=4)
    whole = json.dumps({"ts": 1.0, "phase": "trainer", "kind": "step", "message": "step 2/4 löss", "data": {}})
    with path.open("ab") as handle:
        handle.write(whole.encode()[: len(whole) // 2 + 3])  # cut inside the line (and near the ö)
    return log


def test_a_torn_last_line_is_skipped_and_the_next_event_starts_a_new_line(tmp_path) -> None:
    path = tmp_path / "events.jsonl"
    log = torn_log(path)
    assert [e["message"] for e in log.read()] == ["round 1: training", "step 1/4 loss 2.000"]
    log.emit("trainer", "step", "step 3/4 loss 1.500", step=3, total_steps=4)
    assert [e["message"] for e in log.read()] == ["round 1: training", "step 1/4 loss 2.000", "step 3/4 loss 1.500"]
    lines = path.read_bytes().split(b"\n")
    assert lines[3].startswith(b'{"ts"') and json.loads(lines[3])["data"]["step"] == 3  # not glued on


def test_reading_from_an_offset_returns_only_what_was_appended(tmp_path) -> None:
    path = tmp_path / "events.jsonl"
    assert read_events(path, 0) == ([], 0)  # no log yet
    log = EventLog(path)
    log.emit("researcher", "phase", "searching")
    first, offset = read_events(path, 0)
    assert [e["message"] for e in first] == ["searching"] and offset == path.stat().st_size
    assert read_events(path, offset) == ([], offset)
    line = json.dumps({"ts": 2.0, "phase": "curator", "kind": "phase", "message": "curating", "data": {}})
    with path.open("ab") as handle:
        handle.write(line.encode()[:10])  # a write still in progress: not consumed yet
    assert read_events(path, offset) == ([], offset)
    with path.open("ab") as handle:
        handle.write(line.encode()[10:] + b"\n")
    later, end = read_events(path, offset)
    assert [e["message"] for e in later] == ["curating"] and end == path.stat().st_size


def test_status_cancel_and_the_cli_work_on_a_job_with_a_torn_log(tmp_path) -> None:
    home = tmp_path / "home"
    service = JobService(Settings(home=home))
    job = service.submit("fine-tune a model on quantum error correction", {"docs_path": str(DEMO)})
    torn_log(service.settings.job_paths(job.job_id).events)
    service.jobs.update(job.job_id, status="running", pid=None)
    status = service.status(job.job_id)
    assert status["last_event"] == "round 1: training" and status["training_step"]["step"] == 1
    assert service.cancel(job.job_id).cancel_requested
    assert service.read_events(job.job_id)[-1]["message"].startswith("cancel requested")
    shown = subprocess.run([sys.executable, "-m", "agent.cli", "--home", str(home), "status", job.job_id],
                           check=False, cwd=REPO, capture_output=True, text=True, timeout=120,
                           env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert shown.returncode == 0 and "Traceback" not in shown.stdout + shown.stderr
    assert "round 1: training" in shown.stdout
