"""Tables of shared state (jobs, model versions, feedback) in one database: a SQLite file in the
home folder by default, or a PostgreSQL database when the `database_url` setting is a
`postgresql://` URL (several workers on several hosts then share the jobs, the queue and the
registry).

Each store writes its SQL once, in SQLite's dialect with `?` placeholders; on PostgreSQL the
connection turns `?` into psycopg's `%s` and rows come back as `Row`s (a dict that also answers
`row[0]`, like `sqlite3.Row`). Where the dialects differ (auto-increment keys, adding columns,
claiming a job), a store gives its PostgreSQL form explicitly.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from tools.stores.disk_space import DiskFull, sqlite_connect

POSTGRES_SCHEMES = ("postgresql://", "postgres://")


class DatabaseUrlError(ValueError):
    """A database setting that is neither a SQLite path nor a PostgreSQL URL."""


def is_postgres_url(database: Path | str) -> bool:
    """True for a `postgresql://` (or `postgres://`) URL; a path or anything else is not one."""
    return isinstance(database, str) and database.startswith(POSTGRES_SCHEMES)


def check_database_url(url: str) -> str:
    """The URL itself when it names a PostgreSQL database; DatabaseUrlError says what is wrong
    otherwise."""
    if not is_postgres_url(url):
        scheme = url.split("://", 1)[0] + "://" if "://" in url else repr(url)
        raise DatabaseUrlError(
            f"database_url must be a postgresql:// URL (SQLite is the default without one), "
            f"not {scheme}"
        )
    return url


class DatabaseUnavailable(ConnectionError):
    """The PostgreSQL server cannot be reached or refuses the connection (the message names it,
    without the password)."""


def redacted(url: str) -> str:
    """The URL without its password, for messages."""
    head, at, tail = url.rpartition("@")
    if not at or ":" not in head.split("://", 1)[-1]:
        return url
    return f"{head.rsplit(':', 1)[0]}:***@{tail}"


class Row(dict):
    """A result row: by column name, or by position like `sqlite3.Row`."""

    def __getitem__(self, key: Any) -> Any:
        if isinstance(key, int):
            return list(self.values())[key]
        return super().__getitem__(key)


def _row_factory(cursor: Any) -> Any:
    names = [column.name for column in cursor.description or ()]
    return lambda values: Row(zip(names, values, strict=True))


class PostgresConnection:
    """A psycopg connection that takes the stores' SQLite-dialect statements (`?` placeholders).
    As a context manager it commits (or rolls back on an error) and closes."""

    def __init__(self, url: str) -> None:
        import psycopg

        try:
            self._connection = psycopg.connect(url, row_factory=_row_factory, connect_timeout=10)
        except psycopg.OperationalError as error:
            raise DatabaseUnavailable(
                f"cannot reach the database {redacted(url)}: {str(error).strip().splitlines()[0]}"
            ) from error

    def execute(self, sql: str, parameters: Sequence[Any] = ()) -> Any:
        import psycopg

        if sql.strip().upper() == "BEGIN IMMEDIATE":  # SQLite's one-writer transaction: the same here
            sql = "SELECT pg_advisory_xact_lock(hashtext('ftagent begin immediate'))"
        try:
            return self._connection.execute(
                sql.replace("%", "%%").replace("?", "%s"), tuple(parameters)
            )
        except psycopg.OperationalError as error:  # the server went away, a connection dropped
            raise DatabaseUnavailable(f"the database stopped answering: {error}") from error

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        try:
            if kind is None:
                self._connection.commit()
            else:
                self._connection.rollback()
        finally:
            self._connection.close()

    def close(self) -> None:
        self._connection.close()


class SqlTable:
    """Base for a store of one table: creates the table on first use and hands out connections.
    `schema` is the table in SQLite's dialect; `postgres_schema`, when set, replaces it on
    PostgreSQL."""

    schema: str = ""
    postgres_schema: str | None = None

    def __init__(self, database: Path | str) -> None:
        self.postgres = is_postgres_url(database)
        self.database: Path | str = database if self.postgres else Path(database)
        if not self.postgres:
            Path(self.database).parent.mkdir(parents=True, exist_ok=True)
        try:
            self._create()
        except DiskFull:
            if not Path(self.database).is_file():
                raise
            # a full disk: the tables were made before; reads go on, writes are DiskFull

    def _create(self) -> None:
        with self._connect() as connection:
            if (
                self.postgres
            ):  # workers starting together: one creates the tables, the others wait for it
                connection.execute("SELECT pg_advisory_xact_lock(hashtext('ftagent schema'))")
                connection.execute(self.postgres_schema or self.schema)
            else:
                connection.execute(
                    "PRAGMA journal_mode=WAL"
                )  # readers (status, events) never block the job
                connection.execute(self.schema)
            self._migrate(connection)

    def _migrate(self, connection: Any) -> None:
        """Bring an older table up to date (a subclass adds columns here)."""

    def _connect(self) -> Any:
        if self.postgres:
            return PostgresConnection(str(self.database))
        connection = sqlite_connect(self.database, timeout=30)  # a full disk: DiskFull naming the file
        connection.row_factory = sqlite3.Row
        return connection


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")
