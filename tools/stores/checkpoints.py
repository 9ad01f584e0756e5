"""The LangGraph checkpointer for the jobs' database: SqliteSaver on the SQLite file in the home
folder, PostgresSaver (langgraph-checkpoint-postgres) when the database is a `postgresql://` URL, so
a job that one worker started can be resumed by a worker on another host."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from tools.stores.disk_space import sqlite_connect
from tools.stores.sql_table import is_postgres_url

_LOCK = "ftagent checkpoint migrations"


@contextmanager
def open_checkpointer(database: Path | str, serde: Any = None) -> Iterator[Any]:
    """A checkpointer on `database` (a SQLite path or a PostgreSQL URL), closed on exit."""
    if is_postgres_url(database):
        with _postgres_checkpointer(str(database), serde) as saver:
            yield saver
        return
    from langgraph.checkpoint.sqlite import SqliteSaver

    connection = sqlite_connect(database, check_same_thread=False, timeout=30)  # full disk: DiskFull
    try:
        yield SqliteSaver(connection, serde=serde)
    finally:
        connection.close()


@contextmanager
def _postgres_checkpointer(url: str, serde: Any) -> Iterator[Any]:
    """PostgresSaver on its own autocommit connection (what the saver requires), its tables created
    or migrated first when they are not up to date."""
    from langgraph.checkpoint.postgres import PostgresSaver
    from psycopg import Connection
    from psycopg.rows import dict_row

    with Connection.connect(
        url, autocommit=True, prepare_threshold=0, row_factory=dict_row
    ) as connection:
        saver = PostgresSaver(connection, serde=serde)
        _migrate_once(saver, connection)
        yield saver


def _migrate_once(saver: Any, connection: Any, timeout_s: float = 300.0) -> None:
    """Run the saver's migrations in one process only. Not with a blocking lock: a migration builds
    an index CONCURRENTLY, which waits for every open transaction, so a worker blocked on a lock
    inside a statement would deadlock with it. The one that gets the try-lock migrates; the others
    poll."""
    deadline = time.monotonic() + timeout_s
    while not _migrated(saver, connection):
        if connection.execute(
            "SELECT pg_try_advisory_lock(hashtext(%s)) AS got", (_LOCK,)
        ).fetchone()["got"]:
            try:
                saver.setup()
            finally:
                connection.execute("SELECT pg_advisory_unlock(hashtext(%s))", (_LOCK,))
            return
        if time.monotonic() > deadline:
            raise TimeoutError(
                f"the checkpoint tables were not migrated within {timeout_s:.0f} s "
                "(another process holds the migration lock)"
            )
        time.sleep(0.2)


def _migrated(saver: Any, connection: Any) -> bool:
    """True when the checkpoint tables exist at the saver's newest migration."""
    if connection.execute(
        "SELECT to_regclass('checkpoint_migrations') IS NOT NULL AS present"
    ).fetchone()["present"]:
        row = connection.execute("SELECT max(v) AS v FROM checkpoint_migrations").fetchone()
        return row["v"] is not None and row["v"] >= len(saver.MIGRATIONS) - 1
    return False
