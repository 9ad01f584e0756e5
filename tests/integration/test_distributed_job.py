"""A whole job trained by two torchrun processes: one rank killed with SIGKILL mid-training fails
the job with an error naming that rank, and `ftagent resume` continues from the newest checkpoint on
both ranks to a registered model; the events say how many processes trained and on what."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from own_dataset import parts_rows, write_rows

REPO = Path(__file__).resolve().parents[2]
STEPS = 30

START_JOB = """
import json, sys
from agent.service import JobService
from agent.settings import resolve_settings
service = JobService(resolve_settings({{"home": {home!r}}}))
record = service.submit("fine-tune a model on quantum error correction", json.loads({options!r}))
print(record.job_id, flush=True)
service.run(record.job_id)
"""


def _options(model_dir: Path, dataset: Path) -> dict:
    # the user's own dataset: no research or generation, the job is training, evaluation and
    # deployment
    return {
        "base_model": str(model_dir),
        "dataset": str(dataset),
        "max_rounds": 0,
        "training": {
            "max_steps": STEPS,
            "checkpoint_every": 3,
            "precision": "fp32",
            "batch_size": 4,
            "nproc": 2,
        },
        "evaluation": {"generate_limit": 2, "max_new_tokens": 6, "general_texts": 3},
        "gates": {"min_nll_improvement": 0.0, "max_general_ppl_increase": 10.0},
    }


def _environment() -> dict[str, str]:
    return {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(REPO)}


def _events(home: Path, job_id: str) -> list[dict]:
    path = home / "jobs" / job_id / "events.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _rank_pids(launch: Path) -> list[int]:
    progress = launch / "progress.jsonl"
    for line in progress.read_text().splitlines() if progress.exists() else []:
        record = json.loads(line) if line.endswith("}") else {}
        if record.get("message") == "distributed setup":
            return [rank["pid"] for rank in record["data"]["ranks"]]
    return []


@pytest.mark.slow  # two torchrun launches and a whole job: minutes on 2 cores
def test_killing_one_rank_then_ftagent_resume_finishes_the_job(tiny_model_dir, tmp_path) -> None:
    home = tmp_path / "home"
    dataset = write_rows(tmp_path / "parts.jsonl", parts_rows("messages"))
    code = START_JOB.format(home=str(home), options=json.dumps(_options(tiny_model_dir, dataset)))
    job = subprocess.Popen(
        [sys.executable, "-c", code],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=_environment(),
    )
    job_id = job.stdout.readline().strip()
    checkpoints = home / "jobs" / job_id / "checkpoints" / "round-1"
    deadline = time.monotonic() + 300
    while not list(checkpoints.glob("step-*/state.pt")):
        assert job.poll() is None, (
            f"the job ended before its first checkpoint: {job.stderr.read()[-2000:]}"
        )
        assert time.monotonic() < deadline, "no checkpoint appeared"
        time.sleep(0.01)
    os.kill(_rank_pids(checkpoints / ".launch")[1], signal.SIGKILL)
    _, stderr = job.communicate(timeout=120)
    assert job.returncode != 0 and "rank 1 of 2 was killed by SIGKILL" in stderr, stderr[-2000:]
    kept = max(int(p.parent.name.split("-")[1]) for p in checkpoints.glob("step-*/state.pt"))
    assert kept < STEPS

    resumed = subprocess.run(
        [sys.executable, "-m", "agent.cli", "--home", str(home), "resume", job_id],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
        env=_environment(),
        check=False,
    )
    assert resumed.returncode == 0, resumed.stdout[-2000:] + resumed.stderr[-2000:]
    assert "registered" in resumed.stdout
    events = _events(home, job_id)
    launches = [e["data"] for e in events if e["message"] == "distributed training"]
    assert len(launches) == 2 and all(
        (d["processes"], d["backend"], d["device"]) == (2, "gloo", "cpu") for d in launches
    )
    setups = [e["data"]["ranks"] for e in events if e["message"] == "distributed setup"]
    assert len(setups) == 2 and all(len(ranks) == 2 for ranks in setups)
    at = next(i for i, e in enumerate(events) if e["message"] == "resumed from checkpoint")
    assert events[at]["data"]["step"] == kept
    # by position in the log, not by time stamp: the job relays rank 0's progress file in polls,
    # so the resume and the first step after it can share one millisecond stamp
    steps_after = [e["data"]["step"] for e in events[at + 1 :] if e["kind"] == "step"]
    assert steps_after[0] == kept + 1 and steps_after[-1] == STEPS
    trained = next(
        e for e in events if e["kind"] == "phase" and e["message"].startswith("trained ")
    )
    assert "on 2 processes (ddp, gloo)" in trained["message"] and trained["data"]["processes"] == 2
