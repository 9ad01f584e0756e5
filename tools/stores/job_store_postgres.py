"""The jobs table on PostgreSQL: the queue that several `ftagent worker` processes, on one host or
on several, share.

- Claims: `claim_next` takes the oldest claimable job with `SELECT … FOR UPDATE SKIP LOCKED` inside
  one
  UPDATE, so two workers never take the same job and neither waits for the other's row lock.
- Leases: a running job holds a lease (`lease_expires`, in the database's clock, so hosts' clocks do
  not matter) that a daemon thread of the process running it renews every third of the lease. A
  worker that dies (kill -9, a lost host) stops renewing; once the lease has expired the job reads
  as `interrupted` and the next claim takes it over, and the job resumes from its last graph
  checkpoint. Interrupted jobs are claimed before queued ones.
- `attempts` counts the claims and starts of a job (1 for a job that ran once), `worker` is the
  `host:pid` holding its lease: what an operator reads to see who ran what.

A process id means nothing on another host, so unlike the SQLite store no pid is probed here.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
from dataclasses import dataclass
from typing import Any

import psycopg

from tools.stores.job_store import JobRecord, JobStore, UnknownJob
from tools.stores.sql_table import now_iso

log = logging.getLogger(__name__)

_POSTGRES_SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    job_id TEXT PRIMARY KEY, request TEXT NOT NULL, options TEXT NOT NULL, status TEXT NOT NULL,
    created_at TEXT NOT NULL, updated_at TEXT NOT NULL, outcome TEXT, model_name TEXT, error TEXT,
    pid INTEGER,
    owner TEXT, cancel_requested INTEGER NOT NULL DEFAULT 0,
    seq BIGSERIAL, worker TEXT, lease_expires TIMESTAMPTZ, attempts INTEGER NOT NULL DEFAULT 0
)"""
# The columns of a JobRecord; the lease columns stay in the table (see `lease`).
_RECORD_COLUMNS = (
    "job_id, request, options, status, created_at, updated_at, outcome, model_name, error, pid, "
    "owner, cancel_requested"
)
_SELECT = (
    f"SELECT {_RECORD_COLUMNS}, (status = 'running' AND lease_expires < now()) AS lease_lost "
    "FROM jobs"
)
_TAKE_LEASE = (
    "UPDATE jobs SET worker = ?, attempts = attempts + 1, "
    "lease_expires = now() + make_interval(secs => ?) WHERE job_id = ?"
)
_CLAIM = """
UPDATE jobs SET status = 'running', pid = ?, worker = ?, attempts = attempts + 1, updated_at = ?,
                lease_expires = now() + make_interval(secs => ?)
WHERE job_id = (
    SELECT job_id FROM jobs
    WHERE status = 'queued' OR (status = 'running' AND lease_expires < now())
    ORDER BY status = 'running' DESC, created_at, seq
    LIMIT 1 FOR UPDATE SKIP LOCKED)
RETURNING job_id"""


@dataclass
class JobLease:
    worker: str | None  # host:pid that holds (or last held) the lease
    expires: Any  # datetime in the database's clock, None before the first start
    attempts: int  # claims and starts so far
    expired: bool


class PostgresJobStore(JobStore):
    postgres_schema = _POSTGRES_SCHEMA
    shared = True

    def __init__(self, database: str, lease_s: float = 60.0) -> None:
        if lease_s <= 0:
            raise ValueError(f"the job lease must be a positive number of seconds, not {lease_s}")
        self.lease_s = float(lease_s)
        self.worker = f"{socket.gethostname()}:{os.getpid()}"
        self._keeper = LeaseKeeper(self)
        super().__init__(database)

    def _migrate(self, connection: Any) -> None:
        """Nothing to add yet: the table was created whole."""

    def claim_next(self, pid: int) -> JobRecord | None:
        """Atomically take the oldest interrupted (lease expired) or queued job for this worker and
        start its lease; None when there is none. Never blocks on a job another worker is
        claiming."""
        with self._connect() as connection:
            row = connection.execute(_CLAIM, (pid, self.worker, now_iso(), self.lease_s)).fetchone()
        if row is None:
            return None
        self._keeper.hold(row["job_id"])
        return self.get(row["job_id"])

    def create(
        self,
        job_id: str,
        request: str,
        options: dict[str, Any],
        owner: str | None = None,
        claimed_by: int | None = None,
    ) -> JobRecord:
        """As the SQLite store; a job created already claimed (`ftagent run`) takes its lease here."""
        record = super().create(job_id, request, options, owner, claimed_by)
        if claimed_by is not None:
            with self._connect() as connection:
                connection.execute(_TAKE_LEASE, (self.worker, self.lease_s, job_id))
            self._keeper.hold(job_id)
        return record

    def claim(self, seen: JobRecord, pid: int) -> bool:
        """Take the job for this worker if it is still as `seen`: queued (or failed, cancelled, …) with
        the same status, or interrupted (running with an expired lease). Of two claimants, one wins."""
        condition = (
            "status = 'running' AND lease_expires < now()"
            if seen.status == "interrupted"
            else "status = ? AND pid IS NOT DISTINCT FROM ?"
        )
        values = () if seen.status == "interrupted" else (seen.status, seen.pid)
        with self._connect() as connection:
            row = connection.execute(
                "UPDATE jobs SET status = 'running', pid = ?, worker = ?, attempts = attempts + 1, "
                "updated_at = ?, lease_expires = now() + make_interval(secs => ?) "
                f"WHERE job_id = ? AND {condition} RETURNING job_id",
                (pid, self.worker, now_iso(), self.lease_s, seen.job_id, *values),
            ).fetchone()
        if row is None:
            return False
        self._keeper.hold(seen.job_id)
        return True

    def held_here(self, record: JobRecord) -> bool:
        """True when this process holds the job's lease (a pid alone means nothing across hosts)."""
        return self.lease(record.job_id).worker == self.worker

    def renew(self, job_ids: list[str]) -> set[str]:
        """Extend the lease of those of `job_ids` that still run under this worker; returns them."""
        with self._connect() as connection:
            rows = connection.execute(
                "UPDATE jobs SET lease_expires = now() + make_interval(secs => ?) "
                "WHERE job_id = ANY(?) AND worker = ? AND status = 'running' RETURNING job_id",
                (self.lease_s, list(job_ids), self.worker),
            ).fetchall()
        return {row["job_id"] for row in rows}

    def lease(self, job_id: str) -> JobLease:
        """Who holds the job's lease, until when, and how many times the job was started."""
        with self._connect() as connection:
            row = connection.execute(
                "SELECT worker, lease_expires, attempts, "
                "coalesce(lease_expires < now(), false) AS expired FROM jobs WHERE job_id = ?",
                (job_id,),
            ).fetchone()
        if row is None:
            self.get(job_id)  # UnknownJob
        return JobLease(
            row["worker"], row["lease_expires"], int(row["attempts"]), bool(row["expired"])
        )

    def get(self, job_id: str) -> JobRecord:
        with self._connect() as connection:
            row = connection.execute(f"{_SELECT} WHERE job_id = ?", (job_id,)).fetchone()
        if row is None:
            raise UnknownJob(job_id)
        return self._from_row(row)

    def list(self) -> list[JobRecord]:
        with self._connect() as connection:
            rows = connection.execute(f"{_SELECT} ORDER BY created_at DESC, seq DESC").fetchall()
        return [self._from_row(row) for row in rows]

    @staticmethod
    def _from_row(row: Any) -> JobRecord:
        record = dict(row)
        lease_lost = record.pop("lease_lost")
        record["options"] = json.loads(record["options"])
        record["cancel_requested"] = bool(record["cancel_requested"])
        if lease_lost:
            record["status"] = (
                "interrupted"  # its worker stopped renewing the lease (died or lost its host)
            )
        return JobRecord(**record)


class LeaseKeeper:
    """A daemon thread that renews the leases of the jobs this process runs, every third of the
    lease, until none of them is running here any more. It dies with the process: that is the
    point."""

    def __init__(self, store: PostgresJobStore) -> None:
        self.store = store
        self._held: set[str] = set()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def hold(self, job_id: str) -> None:
        with self._lock:
            self._held.add(job_id)
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(
                    target=self._renew_loop, name="ftagent-lease", daemon=True
                )
                self._thread.start()

    def _renew_loop(self) -> None:
        stop = threading.Event()
        while not stop.wait(self.store.lease_s / 3):
            with self._lock:
                held = sorted(self._held)
            try:
                kept = self.store.renew(held)
            except (OSError, psycopg.Error) as error:  # a database hiccup: try again next round
                log.warning("could not renew job leases %s: %s", held, error)
                continue
            with self._lock:
                for lost in set(held) - kept:
                    self._held.discard(
                        lost
                    )  # finished, or (after a stall) taken over by another worker
                if not self._held:
                    self._thread = None
                    return
