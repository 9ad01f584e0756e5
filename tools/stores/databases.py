"""The store a database setting names: a SQLite file in the home folder, or a PostgreSQL URL."""

from __future__ import annotations

from pathlib import Path

from tools.stores.job_store import JobStore
from tools.stores.job_store_postgres import PostgresJobStore
from tools.stores.sql_table import is_postgres_url


def open_job_store(database: Path | str, lease_s: float = 60.0) -> JobStore:
    """The jobs table in `database`: a SQLite file, or a PostgreSQL URL (a shared store whose
    running jobs hold a lease of `lease_s` seconds, renewed while their process lives)."""
    if is_postgres_url(database):
        return PostgresJobStore(database, lease_s)
    return JobStore(database)
