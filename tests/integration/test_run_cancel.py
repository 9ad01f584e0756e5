"""`ftagent run` is a job like any other: claimed at creation (no worker takes it), it waits for the home's
training lock, and `ftagent cancel` from another process stops it within seconds (real subprocesses),
even in the middle of a phase that writes no events for minutes (curation embeds every chunk); a cancel
stops it within 10 s in each phase that takes long (researcher, curator, generator, trainer, evaluator);
of processes racing to claim one queued job, exactly one gets it."""

from __future__ import annotations

import asyncio
import fcntl
import json
import os
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from own_dataset import write_rows
from scripted_chat import ScriptedChat, serve
from tiny_job import DEMO_CORPUS, SUBJECT_SENTENCE, small_corpus

from agent.service import JobService
from agent.settings import Settings
from tools.stores.job_store import JobStore

REPO = Path(__file__).resolve().parents[2]
PHASE_ORDER = ["intake", "researcher", "curator", "generator", "dataset", "trainer", "evaluator", "critic",
               "deployer"]


def _cli(home: Path, *args: str, env: dict[str, str] | None = None, **popen) -> subprocess.Popen:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false", "PYTHONPATH": str(REPO),
           **(env or {})}
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


# -- every phase -------------------------------------------------------------------------------------
# Each case starts `ftagent run` on a job whose phase lasts far longer than 10 s, waits for the event
# that says the job is inside that phase, cancels from this process (another process than the job's,
# through JobService.cancel as `ftagent cancel` does) and asserts that the job stopped within 10 s
# without finishing the phase.

class SlowPages(ThreadingHTTPServer):
    """Web pages on quantum error correction that take PAGE_DELAY_S each to arrive (a slow site)."""

    daemon_threads = True


PAGE_DELAY_S = 2.0
PAGE = (DEMO_CORPUS / "stabilizer-formalism.html").read_text(encoding="utf-8")


class _SlowPage(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        if self.path == "/robots.txt":
            self.send_error(404)
            return
        time.sleep(PAGE_DELAY_S)
        body = PAGE.replace("<title>", f"<title>{self.path} ").encode("utf-8")
        self.send_response(200)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@contextmanager
def slow_pages() -> Iterator[str]:
    server = SlowPages(("127.0.0.1", 0), _SlowPage)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def _dataset(folder: Path, rows: int = 120) -> Path:
    """An own dataset (research and generation skipped: the job starts at the trainer)."""
    return write_rows(folder / "own.jsonl", [
        {"instruction": f"What is the part number of part {n}?", "input": "", "output": f"Part {n} is P-{n}."}
        for n in range(rows)])


@dataclass(frozen=True)
class PhaseCase:
    """A job that spends a long time in `phase`; `inside(event)` is the event that says it is there,
    `finished(event)` one that says the phase ended (it must not appear)."""

    phase: str
    arguments: Callable[[Path, Path, str], list[str]]  # (tiny model, tmp folder, slow site) -> CLI args
    inside: Callable[[dict], bool]
    finished: Callable[[dict], bool]


def _is(phase: str, kind: str, starts: str = "") -> Callable[[dict], bool]:
    return lambda e: e["phase"] == phase and e["kind"] == kind and e["message"].startswith(starts)


def _docs_job(model: Path, tmp: Path, *extra: str) -> list[str]:
    return [SUBJECT_SENTENCE, "--model", str(model), "--docs", str(small_corpus(tmp / "docs")),
            "--max-rounds", "0", *extra]


def _dataset_job(model: Path, tmp: Path, *extra: str) -> list[str]:
    return [SUBJECT_SENTENCE, "--model", str(model), "--dataset", str(_dataset(tmp)), "--max-rounds", "0",
            *extra]


PHASES = [
    # 30 pages of 2 s each: a minute of downloads
    PhaseCase("researcher",
              lambda model, tmp, site: [SUBJECT_SENTENCE, "--model", str(model), "--max-rounds", "0",
                                        *(arg for n in range(30) for arg in ("--url", f"{site}/page-{n}.html"))],
              _is("researcher", "decision", "sources:"), _is("researcher", "phase")),
    # every chunk of five documents embedded, scored and de-duplicated
    PhaseCase("curator", lambda model, tmp, _: _docs_job(model, tmp),
              _is("researcher", "phase"), _is("curator", "phase")),
    # the local generator writes each chunk's questions with the (tiny) base model, 2048 tokens at most
    PhaseCase("generator",
              lambda model, tmp, _: _docs_job(model, tmp, "--set", "generation.generator=local",
                                              "--set", "generation.local_max_new_tokens=2048"),
              _is("curator", "phase"), _is("generator", "phase")),
    # 100,000 steps
    PhaseCase("trainer", lambda model, tmp, _: _dataset_job(model, tmp, "--max-steps", "100000"),
              _is("trainer", "phase", "round 1"), _is("trainer", "phase", "trained")),
    # one step, then 1,024 new tokens for every held-out and general question, base and tuned
    PhaseCase("evaluator",
              lambda model, tmp, _: _dataset_job(model, tmp, "--max-steps", "1",
                                                 "--set", "evaluation.max_new_tokens=1024",
                                                 "--set", "evaluation.generate_limit=1000",
                                                 "--set", "evaluation.general_qa=40"),
              _is("evaluator", "phase"), lambda e: e["phase"] == "evaluator" and e["kind"] in ("judge", "gate")),
]


@dataclass(frozen=True)
class Stopped:
    """How a cancelled `ftagent run` ended: seconds from the cancel to its exit, its output, the job's events."""

    job_id: str
    seconds: float
    output: str
    events: list[dict]

    def timeline(self) -> list[tuple[float, str, str]]:
        return [(round(e["ts"] - self.events[0]["ts"], 1), e["phase"], e["kind"]) for e in self.events[-5:]]


def cancel_when(home: Path, run: subprocess.Popen, inside: Callable[[str], bool], what: str) -> Stopped:
    """Wait until `inside(job_id)`, cancel the job from this process (through JobService.cancel, as
    `ftagent cancel` does) and time how long the run takes to exit."""
    try:
        job = _wait(lambda: _first_job(home), 120, "the job row", run)
        _wait(lambda: inside(job.job_id), 300, what, run)
        JobService(Settings(home=home)).cancel(job.job_id, admin=True)
        asked = time.monotonic()
        run.wait(30)
        seconds = time.monotonic() - asked
        return Stopped(job.job_id, seconds, run.stdout.read(), _events(home, job.job_id))
    finally:
        if run.poll() is None:
            run.kill()
            run.wait(10)


def assert_cancelled_inside(home: Path, run: subprocess.Popen, stopped: Stopped, phase: str,
                            finished: Callable[[dict], bool]) -> None:
    """Stopped within 10 s, as cancelled, inside `phase`: no event says it finished, no later phase began."""
    timeline = stopped.timeline()
    assert stopped.seconds < 10, (stopped.seconds, timeline)
    assert run.returncode == 3 and "cancelled" in stopped.output, stopped.output
    assert JobStore(home / "ftagent.sqlite").get(stopped.job_id).status == "cancelled", (stopped.output, timeline)
    assert stopped.events[-1]["kind"] == "cancelled"
    assert not any(finished(e) for e in stopped.events), timeline  # stopped inside the phase
    later = PHASE_ORDER[PHASE_ORDER.index(phase) + 1:]
    assert not any(e["phase"] in later for e in stopped.events), timeline


@pytest.mark.parametrize("case", PHASES, ids=[case.phase for case in PHASES])
def test_cancel_stops_the_job_within_10_seconds_in_every_phase(case, home, tiny_model_dir, tmp_path):
    with slow_pages() as site:
        run = _cli(home, "run", *case.arguments(tiny_model_dir, tmp_path, site), "--quiet")
        stopped = cancel_when(home, run, lambda job_id: any(case.inside(e) for e in _events(home, job_id)),
                              f"the job inside the {case.phase}")
    assert_cancelled_inside(home, run, stopped, case.phase, case.finished)


class SilentRewriter(ScriptedChat):
    """A chat model that never answers a rewrite request while the test runs (each waits until `released`);
    anything else (the intake's reading of the request) gets prose at once, which the job reads without it."""

    def __init__(self) -> None:
        super().__init__()
        self.asked_at: list[float] = []  # when each rewrite request arrived
        self.released = False

    def behaviour(self, body: dict[str, Any]) -> Any:
        return "rewrite" if "Passage:" in "\n".join(m["content"] for m in body["messages"]) else "prose"

    async def reply(self, body: dict[str, Any], behaviour: Any) -> Any:
        if behaviour == "rewrite":
            self.asked_at.append(time.time())
            while not self.released:
                await asyncio.sleep(0.1)
        return await super().reply(body, "prose")


def test_cancel_stops_the_job_within_10_seconds_while_the_chat_model_rewrites(home, tiny_model_dir, tmp_path):
    """The generator's rewrites wait on a chat model's replies in worker threads (a minute each at most
    with the default timeout): the job still stops within 10 s of the cancel, asking nothing more."""
    chat = SilentRewriter()
    for _, base_url in serve(chat):
        env = {"FTAGENT_CHAT_MODEL": "scripted", "FTAGENT_CHAT_BASE_URL": base_url, "FTAGENT_CHAT_API_KEY": "x"}
        run = _cli(home, "run", *_docs_job(tiny_model_dir, tmp_path, "--set", "generation.llm_timeout_s=300",
                                           "--set", "evaluation.judge=false"), "--quiet", env=env)
        try:
            stopped = cancel_when(home, run, lambda _: len(chat.asked_at) >= 2, "the rewrite requests")
        finally:
            chat.released = True
    assert_cancelled_inside(home, run, stopped, "generator", _is("generator", "phase"))
    assert max(chat.asked_at) < stopped.events[-1]["ts"]  # no request sent after the job was cancelled


# -- the claim race ----------------------------------------------------------------------------------

CLAIMER = """
import os, sys, time
from tools.stores.job_store import JobStore
store, start = JobStore(sys.argv[1]), float(sys.argv[2])
for attempt in sys.argv[3:]:  # "job-N": JobService.run's claim of a named job; "next": a worker's
    seen = store.get(attempt) if attempt != "next" else None
    time.sleep(max(0.0, start - time.time()))
    if seen is not None:
        taken = seen.job_id if seen.status == "queued" and store.claim(seen, os.getpid()) else None
    else:
        taken = getattr(store.claim_next(os.getpid()), "job_id", None)
    print(attempt, taken or "-", flush=True)
    start += 0.5
"""


def test_of_processes_racing_for_a_queued_job_exactly_one_gets_it(tmp_path):
    """Eight processes race at the same instant, first for each of five queued jobs by name (the claim of
    `JobService.run`, which every door's run goes through), then as workers for the oldest queued job
    (five left for eight): every job goes to exactly one process, and its pid is the winner's."""
    database = tmp_path / "ftagent.sqlite"
    store = JobStore(database)
    jobs = [store.create(f"job-{n}", SUBJECT_SENTENCE, {}).job_id for n in range(10)]
    attempts = [*jobs[:5], "next"]
    start = time.time() + 4  # every process imported and waiting by then, even on a loaded machine
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    racers = [subprocess.Popen([sys.executable, "-c", CLAIMER, str(database), str(start), *attempts],
                               cwd=REPO, env=env, stdout=subprocess.PIPE, text=True) for _ in range(8)]
    winners: dict[str, list[int]] = {job_id: [] for job_id in jobs}
    for racer in racers:
        output, _ = racer.communicate(timeout=120)
        assert racer.returncode == 0
        taken = [line.split()[1] for line in output.splitlines()]
        assert len(taken) == len(attempts)
        for job_id in taken:
            if job_id != "-":
                winners[job_id].append(racer.pid)
    assert all(len(pids) == 1 for pids in winners.values()), winners
    for job_id, (pid,) in winners.items():
        record = store.get(job_id)  # the racers have exited: their running jobs read as interrupted
        assert (record.status, record.pid) == ("interrupted", pid)
