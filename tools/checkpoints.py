"""The LangGraph checkpointer for the jobs' database: SqliteSaver on the SQLite file in the home folder,
PostgresSaver (langgraph-checkpoint-postgres) when the database is a `postgresql://` URL, so a job that
one worker started can be resumed by a worker on another host."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from tools.sql_table import is_postgres_url


@contextmanager
def open_checkpointer(database: Path | str, serde: Any = None) -> Iterator[Any]:
    """A checkpointer on `database` (a SQLite path or a PostgreSQL URL), closed on exit."""
    if is_postgres_url(database):
        with _postgres_checkpointer(str(database), serde) as saver:
            yield saver
        return
    from langgraph.checkpoint.sqlite import SqliteSaver

    connection = sqlite3.connect(database, check_same_thread=False, timeout=30)
    try:
        yield SqliteSaver(connection, serde=serde)
    finally:
        connection.close()


@contextmanager
def _postgres_checkpointer(url: str, serde: Any) -> Iterator[Any]:
    """PostgresSaver on its own autocommit connection (what the saver requires); its tables are created
    or migrated on first use, under an advisory lock so that workers starting together do it once."""
    from langgraph.checkpoint.postgres import PostgresSaver
    from psycopg import Connection
    from psycopg.rows import dict_row

    with Connection.connect(url, autocommit=True, prepare_threshold=0, row_factory=dict_row) as connection:
        saver = PostgresSaver(connection, serde=serde)
        connection.execute("SELECT pg_advisory_lock(hashtext('ftagent checkpoints'))")
        try:
            saver.setup()
        finally:
            connection.execute("SELECT pg_advisory_unlock(hashtext('ftagent checkpoints'))")
        yield saver
