"""One SQLite file in the home folder holds several tables (jobs, model versions, feedback);
each store opens it the same way."""

from __future__ import annotations

import sqlite3
from pathlib import Path


class SqliteTable:
    """Base for a store of one table: creates the file and the table, hands out connections."""

    schema: str = ""

    def __init__(self, database: Path) -> None:
        self.database = Path(database)
        self.database.parent.mkdir(parents=True, exist_ok=True)
        with self._connect() as connection:
            connection.execute("PRAGMA journal_mode=WAL")  # readers (status, events) never block the job
            connection.execute(self.schema)
            self._migrate(connection)

    def _migrate(self, connection: sqlite3.Connection) -> None:
        """Bring an older table up to date (a subclass adds columns here)."""

    def _connect(self) -> sqlite3.Connection:
        connection = sqlite3.connect(self.database, timeout=30)
        connection.row_factory = sqlite3.Row
        return connection
