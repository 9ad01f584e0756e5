"""The jobs table: what was asked, by whom, its status and outcome (SQLite in the home folder; on
PostgreSQL, tools/stores/job_store_postgres.py, chosen by `open_job_store`)."""

from __future__ import annotations

import json
import os
import sqlite3
from dataclasses import asdict, dataclass
from typing import Any

from tools.stores.sql_table import SqlTable, now_iso

_SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    job_id TEXT PRIMARY KEY, request TEXT NOT NULL, options TEXT NOT NULL, status TEXT NOT NULL,
    created_at TEXT NOT NULL, updated_at TEXT NOT NULL, outcome TEXT, model_name TEXT, error TEXT, pid INTEGER
)"""
# Columns added after the first release: (name, SQL type and default), added to older databases on open.
_ADDED_COLUMNS = (("owner", "TEXT"), ("cancel_requested", "INTEGER NOT NULL DEFAULT 0"))
TERMINAL_STATUSES = frozenset({"succeeded", "failed", "cancelled"})


class UnknownJob(KeyError):
    def __init__(self, job_id: str) -> None:
        super().__init__(job_id)
        self.job_id = job_id

    def __str__(self) -> str:
        return f"no job with id {self.job_id!r}"


@dataclass
class JobRecord:
    job_id: str
    request: str
    options: dict[str, Any]
    status: str  # queued, running, succeeded, failed, interrupted, cancelled
    created_at: str
    updated_at: str
    outcome: str | None = None
    model_name: str | None = None
    error: str | None = None
    pid: int | None = None
    owner: str | None = None  # who submitted it (Slack user id, API user, OS user); only they may cancel
    cancel_requested: bool = False  # set by cancel(); the runner stops at the next event

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class JobStore(SqlTable):
    schema = _SCHEMA
    # False: one host's workers (one at a time, under the home's worker lock); a running job whose process
    # is gone reads as interrupted. A shared store (PostgreSQL) hands such jobs out through its claims.
    shared = False

    def _migrate(self, connection: sqlite3.Connection) -> None:
        present = {row["name"] for row in connection.execute("PRAGMA table_info(jobs)")}
        for name, definition in _ADDED_COLUMNS:
            if name not in present:
                connection.execute(f"ALTER TABLE jobs ADD COLUMN {name} {definition}")

    def create(self, job_id: str, request: str, options: dict[str, Any], owner: str | None = None,
               claimed_by: int | None = None) -> JobRecord:
        """A new job, queued; or, with `claimed_by` (a pid), already running under that process so that no
        worker can take it between its creation and its run."""
        now = now_iso()
        status = "queued" if claimed_by is None else "running"
        record = JobRecord(job_id, request, options, status, now, now, owner=owner, pid=claimed_by)
        with self._connect() as connection:
            connection.execute(
                "INSERT INTO jobs (job_id, request, options, status, created_at, updated_at, owner, pid) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (job_id, request, json.dumps(options), status, now, now, owner, claimed_by))
        return record

    def claim(self, seen: JobRecord, pid: int) -> bool:
        """Mark the job running under `pid` if it is still as `seen` (status and pid unchanged): of two
        processes claiming the same job, exactly one gets True."""
        with self._connect() as connection:
            cursor = connection.execute(
                "UPDATE jobs SET status = 'running', pid = ?, updated_at = ? WHERE job_id = ? AND status = ? "
                "AND pid IS ?", (pid, now_iso(), seen.job_id,
                                 "running" if seen.status == "interrupted" else seen.status, seen.pid))
            return cursor.rowcount == 1

    def held_here(self, record: JobRecord) -> bool:
        """True when this process is the one running the job."""
        return record.pid == os.getpid()

    def claim_next(self, pid: int) -> JobRecord | None:
        """Atomically mark the oldest queued job as running under `pid` and return it (None if none is queued),
        so two workers never take the same job."""
        with self._connect() as connection:
            connection.execute("BEGIN IMMEDIATE")
            row = connection.execute(
                "SELECT job_id FROM jobs WHERE status = 'queued' ORDER BY created_at, rowid LIMIT 1").fetchone()
            if row is None:
                return None
            connection.execute("UPDATE jobs SET status = 'running', pid = ?, updated_at = ? WHERE job_id = ?",
                               (pid, now_iso(), row["job_id"]))
        return self.get(row["job_id"])

    def update(self, job_id: str, **fields: Any) -> JobRecord:
        self.get(job_id)
        fields["updated_at"] = now_iso()
        assignments = ", ".join(f"{key} = ?" for key in fields)
        with self._connect() as connection:
            connection.execute(f"UPDATE jobs SET {assignments} WHERE job_id = ?", (*fields.values(), job_id))
        return self.get(job_id)

    def get(self, job_id: str) -> JobRecord:
        with self._connect() as connection:
            row = connection.execute("SELECT * FROM jobs WHERE job_id = ?", (job_id,)).fetchone()
        if row is None:
            raise UnknownJob(job_id)
        return self._from_row(row)

    def list(self) -> list[JobRecord]:
        with self._connect() as connection:
            rows = connection.execute("SELECT * FROM jobs ORDER BY created_at DESC").fetchall()
        return [self._from_row(row) for row in rows]

    @staticmethod
    def _from_row(row: sqlite3.Row) -> JobRecord:
        record = dict(row)
        record["options"] = json.loads(record["options"])
        record["cancel_requested"] = bool(record.get("cancel_requested"))
        if record["status"] == "running" and record["pid"] and not _alive(record["pid"]):
            record["status"] = "interrupted"  # the process that ran it is gone (killed or crashed)
        return JobRecord(**record)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
