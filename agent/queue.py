"""The durable job queue: queued jobs live in the jobs table; a worker takes them one at a time.

- One training at a time per home: the worker holds an exclusive lock file (`<home>/worker.lock`, released
  by the OS when the process dies, so a `kill -9` never leaves a stale lock).
- On start the worker first resumes interrupted jobs (status running with a dead pid), from their last
  graph checkpoint, then takes queued jobs oldest first (claimed atomically in SQLite).
- On a shared store (PostgreSQL, `database_url`) any number of workers, on any hosts, share one queue:
  there is no home lock, and a claim takes over an interrupted job (its lease expired) or else the oldest
  queued one, so no two workers ever run the same job (tools/stores/job_store_postgres.py).
- Cancellation: `JobService.cancel` sets a flag; `CancelWatch`, an event listener, reads it at every event
  the job writes (each phase change, decision and training step) and raises `JobCancelled`, which unwinds
  the graph. Work finished before that point is checkpointed and kept.
- Running itself is `JobService.run` (claim, training lock, cancel watch), the same for every door.
"""

from __future__ import annotations

import fcntl
import logging
import os
import threading
from dataclasses import dataclass
from typing import TextIO

from agent.service import CancelWatch, JobCancelled, JobFailed, JobService
from graphs.state import JobState
from tools.events import EventListener
from tools.stores.job_store import TERMINAL_STATUSES

__all__ = ["CancelWatch", "JobCancelled", "JobResult", "Worker", "WorkerBusy", "is_finished", "run_job"]

log = logging.getLogger(__name__)


class WorkerBusy(RuntimeError):
    """Another worker already runs this home's queue."""


@dataclass
class JobResult:
    job_id: str
    status: str  # succeeded, failed, cancelled
    outcome: str | None
    state: JobState | None = None  # the typed results (graphs/state.py)


def run_job(service: JobService, job_id: str, listeners: tuple[EventListener, ...] = (),
            resume: bool = False, keep_cancel: bool = False) -> JobResult:
    """Run (or resume) one job in this process through `JobService.run`; never raises for a job's own
    failure (JobBusy when another live process runs it)."""
    try:
        state = (service.resume(job_id, listeners, keep_cancel=keep_cancel) if resume
                 else service.run(job_id, listeners))
    except JobFailed as failure:
        return JobResult(job_id, "failed", str(failure.error))
    return JobResult(job_id, state.get("status", "failed"), state.get("outcome"), state)


class Worker:
    """Drains the queue of one home, one job at a time."""

    def __init__(self, service: JobService, poll_seconds: float = 0.5,
                 listeners: tuple[EventListener, ...] = ()) -> None:
        self.service = service
        self.poll_seconds = poll_seconds
        self.listeners = listeners
        self.stop_event = threading.Event()
        self._lock_file: TextIO | None = None

    def acquire(self) -> None:
        """Take this home's worker lock; WorkerBusy if another live worker has it. A shared store needs
        none: its claims keep workers apart."""
        if self.service.jobs.shared:
            return
        path = self.service.settings.layout.worker_lock
        handle = path.open("w")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as error:
            handle.close()
            raise WorkerBusy(f"another worker is running jobs in {self.service.settings.home}") from error
        handle.write(str(os.getpid()))
        handle.flush()
        self._lock_file = handle

    def release(self) -> None:
        if self._lock_file is not None:
            fcntl.flock(self._lock_file, fcntl.LOCK_UN)
            self._lock_file.close()
            self._lock_file = None

    def recover(self) -> list[JobResult]:
        """Resume every interrupted job (its process died mid-run); cancelled-while-dead ones are closed.
        On a shared store the claims do this, one worker per job."""
        if self.service.jobs.shared:
            return []
        interrupted = [r for r in self.service.jobs.list() if r.status == "interrupted"]
        return [run_job(self.service, r.job_id, self.listeners, resume=True, keep_cancel=True)
                for r in reversed(interrupted)]

    def run_once(self) -> JobResult | None:
        """Claim the oldest queued job and run it to its end; None if nothing is queued."""
        record = self.service.jobs.claim_next(os.getpid())
        if record is None:
            return None
        log.info("worker: running job %s", record.job_id)
        return run_job(self.service, record.job_id, self.listeners)

    def drain(self) -> list[JobResult]:
        """Recover interrupted jobs, then run queued ones until none is left."""
        results = self.recover()
        while not self.stop_event.is_set() and (result := self.run_once()) is not None:
            results.append(result)
        return results

    def serve_forever(self) -> None:
        """Recover, then poll for queued jobs until `stop()`; holds the worker lock meanwhile."""
        self.acquire()
        try:
            self.recover()
            while not self.stop_event.is_set():
                if self.run_once() is None:
                    self.stop_event.wait(self.poll_seconds)
        finally:
            self.release()

    def start_thread(self) -> threading.Thread:
        """Run `serve_forever` in a daemon thread (the API process and the chat use this)."""
        self.acquire()
        self.release()  # fail now, in the caller, if another worker is running
        thread = threading.Thread(target=self.serve_forever, name="ftagent-worker", daemon=True)
        thread.start()
        return thread

    def stop(self) -> None:
        self.stop_event.set()


def is_finished(status: str) -> bool:
    """True for a status no worker will change any more."""
    return status in TERMINAL_STATUSES
