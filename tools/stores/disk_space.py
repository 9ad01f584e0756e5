"""A full disk, said clearly: `DiskFull` names the file that could not be written, instead of a raw
`sqlite3.OperationalError` or `OSError: [Errno 28]` traceback. What was written before stays readable:
SQLite rolls the failed transaction back, and the event log's readers skip a torn last line.

`sqlite_connect` opens SQLite connections whose statements and commits turn SQLite's "database or disk
is full" (and an I/O error on a disk with no space left) into DiskFull; `disk_full_error` does the same
for any OSError of a plain file write."""

from __future__ import annotations

import errno
import os
import sqlite3
from pathlib import Path
from typing import Any

_FULL_ERRNOS = (errno.ENOSPC, errno.EDQUOT)
_NEARLY_FULL_BYTES = 256 * 1024  # an I/O error on a disk with less free than this is taken as a full disk


class DiskFull(OSError):
    """No space left writing `path`; earlier writes are kept."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        free = free_bytes(self.path)
        self.message = (f"disk full writing {self.path}" + (f" ({free // 1024} KiB free)" if free is not None else "")
                        + ": what was written before is kept and readable; free some space on that disk and "
                          "try again (a job continues with: ftagent resume JOB)")
        super().__init__(errno.ENOSPC, self.message, str(self.path))

    def __str__(self) -> str:
        return self.message


def free_bytes(path: Path) -> int | None:
    """Bytes free to this user on the disk holding `path` (its nearest existing folder); None if unknown."""
    for folder in (path, *path.parents):
        if folder.exists():
            try:
                stats = os.statvfs(folder)
            except OSError:
                return None
            return stats.f_bavail * stats.f_frsize
    return None


def disk_full_error(error: BaseException, path: Path | str) -> DiskFull | None:
    """DiskFull for `path` when `error` is a full disk (ENOSPC, EDQUOT, SQLite's SQLITE_FULL, or a SQLite
    I/O error on a disk with almost no space left); None for any other error."""
    if isinstance(error, DiskFull):
        return error
    if isinstance(error, OSError) and error.errno in _FULL_ERRNOS:
        return DiskFull(path)
    if isinstance(error, sqlite3.OperationalError):
        code = getattr(error, "sqlite_errorcode", None)
        if code == sqlite3.SQLITE_FULL or "database or disk is full" in str(error):
            return DiskFull(path)
        if (code is not None and code & 0xFF == sqlite3.SQLITE_IOERR) or "disk I/O error" in str(error):
            free = free_bytes(Path(path))
            if free is not None and free < _NEARLY_FULL_BYTES:
                return DiskFull(path)
    return None


def _said(error: sqlite3.OperationalError, connection: Any) -> BaseException:
    """DiskFull for a full-disk error (or any write refused by a full disk's read-only fallback), else `error`."""
    if getattr(connection, "full_disk_fallback", False) and \
            (getattr(error, "sqlite_errorcode", 0) or 0) & 0xFF == sqlite3.SQLITE_READONLY:
        return DiskFull(connection.path)
    return disk_full_error(error, connection.path) or error


class _GuardedCursor(sqlite3.Cursor):
    def execute(self, *args: Any, **kwargs: Any) -> Any:
        try:
            return super().execute(*args, **kwargs)
        except sqlite3.OperationalError as error:
            raise _said(error, self.connection) from error

    def executemany(self, *args: Any, **kwargs: Any) -> Any:
        try:
            return super().executemany(*args, **kwargs)
        except sqlite3.OperationalError as error:
            raise _said(error, self.connection) from error


class GuardedConnection(sqlite3.Connection):
    """A SQLite connection whose full-disk failures are DiskFull naming the database file."""

    path: Path
    full_disk_fallback: bool = False  # opened immutable because the disk was too full for SQLite's WAL index

    def cursor(self, factory: Any = _GuardedCursor) -> Any:
        return super().cursor(factory)

    def execute(self, *args: Any, **kwargs: Any) -> Any:
        return self.cursor().execute(*args, **kwargs)

    def executemany(self, *args: Any, **kwargs: Any) -> Any:
        return self.cursor().executemany(*args, **kwargs)

    def commit(self) -> None:
        try:
            super().commit()
        except sqlite3.OperationalError as error:
            raise _said(error, self) from error

    def __exit__(self, *exc: object) -> Any:
        try:
            return super().__exit__(*exc)
        except sqlite3.OperationalError as error:
            raise _said(error, self) from error


def sqlite_connect(database: Path | str, **kwargs: Any) -> GuardedConnection:
    """sqlite3.connect with full-disk failures said clearly (DiskFull naming `database`). On a disk too full
    for SQLite to open its WAL index, an existing database opens read-only (immutable): what was written is
    still readable (status, events, models), and every write is DiskFull."""
    connection = _open(database, **kwargs)
    try:
        connection.execute("PRAGMA schema_version")  # reads the file: opens the WAL index (needs space)
    except DiskFull:
        connection.close()
        if not Path(database).is_file():
            raise
        connection = _open(Path(database).resolve().as_uri() + "?mode=ro&immutable=1", uri=True, path=Path(database),
                           **kwargs)
        connection.full_disk_fallback = True
    return connection


def _open(target: Path | str, path: Path | None = None, **kwargs: Any) -> GuardedConnection:
    try:
        connection = sqlite3.connect(target, factory=GuardedConnection, **kwargs)
    except sqlite3.OperationalError as error:
        raise disk_full_error(error, path or target) or error from error
    connection.path = Path(path or target)
    return connection
