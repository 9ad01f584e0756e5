"""The model registry: versioned tuned models with lineage, in SQLite."""

from __future__ import annotations

import json
import sqlite3
from dataclasses import asdict, dataclass
from typing import Any

from tools.models.catalogue import model_key
from tools.stores.sql_table import SqlTable
from tools.text import slugify

STATUSES = ("staging", "production", "archived", "rejected")


class RegistryError(ValueError):
    """An unknown model, or a change the registry refuses (the message says why)."""


class RegistryRefusal(RegistryError):
    """A change the registry refuses without force: promoting a version that failed its gates,
    deleting the production version, rolling back with nothing to go back to."""


@dataclass
class ModelVersion:
    name: str
    family: str  # ft-<base>-<subject-slug>: the versions of one tuned model
    version: int
    base_model: str
    base_model_path: str
    subject: str
    status: str
    gates_passed: bool
    adapter_path: str
    merged_path: str | None
    card_path: str
    dataset_hash: str
    job_id: str
    round: int
    created_at: str
    sources: list[dict[str, Any]]
    config: dict[str, Any]
    metrics: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


_SCHEMA = """
CREATE TABLE IF NOT EXISTS model_versions (
    name TEXT PRIMARY KEY, family TEXT NOT NULL, version INTEGER NOT NULL, base_model TEXT NOT NULL,
    base_model_path TEXT NOT NULL, subject TEXT NOT NULL, status TEXT NOT NULL, gates_passed INTEGER NOT NULL,
    adapter_path TEXT NOT NULL, merged_path TEXT, card_path TEXT NOT NULL, dataset_hash TEXT NOT NULL,
    job_id TEXT NOT NULL, round INTEGER NOT NULL, created_at TEXT NOT NULL,
    sources TEXT NOT NULL, config TEXT NOT NULL, metrics TEXT NOT NULL,
    UNIQUE (family, version)
)"""
_JSON_FIELDS = ("sources", "config", "metrics")


class ModelRegistry(SqlTable):
    schema = _SCHEMA

    def next_version(self, family: str) -> int:
        with self._connect() as connection:
            row = connection.execute("SELECT MAX(version) FROM model_versions WHERE family = ?", (family,)).fetchone()
        return (row[0] or 0) + 1

    def find_by_job(self, job_id: str, round_number: int) -> ModelVersion | None:
        """The version a job registered in a given round (so a resumed deployer does not register twice)."""
        with self._connect() as connection:
            row = connection.execute("SELECT * FROM model_versions WHERE job_id = ? AND round = ?",
                                     (job_id, round_number)).fetchone()
        return self._from_row(row) if row else None

    def register(self, version: ModelVersion) -> ModelVersion:
        record = version.to_dict()
        for key in _JSON_FIELDS:
            record[key] = json.dumps(record[key], default=str)
        record["gates_passed"] = int(version.gates_passed)
        columns = ", ".join(record)
        with self._connect() as connection:
            connection.execute(f"INSERT INTO model_versions ({columns}) VALUES ({', '.join('?' * len(record))})",
                               tuple(record.values()))
        return version

    def get(self, name: str) -> ModelVersion:
        with self._connect() as connection:
            row = connection.execute("SELECT * FROM model_versions WHERE name = ?", (name,)).fetchone()
        if row is None:
            known = [v.name for v in self.list()]
            raise RegistryError(f"no model named {name!r}; known: {', '.join(known) or 'none yet'}")
        return self._from_row(row)

    def list(self) -> list[ModelVersion]:
        with self._connect() as connection:
            rows = connection.execute("SELECT * FROM model_versions ORDER BY created_at, name").fetchall()
        return [self._from_row(row) for row in rows]

    def set_status(self, name: str, status: str, force: bool = False) -> ModelVersion:
        """Promote to production (archiving the family's current production), archive, etc.
        A version that failed its gates is not promoted unless forced."""
        if status not in STATUSES:
            raise RegistryError(f"unknown status {status!r}; one of {', '.join(STATUSES)}")
        version = self.get(name)
        if status == "production" and not version.gates_passed and not force:
            raise RegistryRefusal(f"{name} failed its quality gates; promote it with force if you mean it")
        with self._connect() as connection:
            if status == "production":
                connection.execute("UPDATE model_versions SET status = 'archived' "
                                   "WHERE family = ? AND status = 'production'", (version.family,))
            connection.execute("UPDATE model_versions SET status = ? WHERE name = ?", (status, name))
        return self.get(name)

    def set_merged_path(self, name: str, merged_path: str) -> ModelVersion:
        """Remember where a version's merged standalone weights are (made by the deployer or an export)."""
        self.get(name)  # RegistryError for an unknown name
        with self._connect() as connection:
            connection.execute("UPDATE model_versions SET merged_path = ? WHERE name = ?", (merged_path, name))
        return self.get(name)

    def family_of(self, family_or_model: str) -> str:
        """The family a model name belongs to, or the name itself when it is a family."""
        versions = self.list()
        for version in versions:
            if family_or_model in (version.name, version.family):
                return version.family
        families = sorted({v.family for v in versions})
        raise RegistryError(f"no model or family named {family_or_model!r}; families: "
                            f"{', '.join(families) or 'none yet'}")

    def rollback(self, family_or_model: str) -> tuple[ModelVersion, ModelVersion]:
        """Put the family's previous version back in production: the newest archived version older
        than the current production one (archived is where a replaced production version goes).
        The current production version is archived. Returns (demoted, restored)."""
        family = self.family_of(family_or_model)
        versions = [v for v in self.list() if v.family == family]
        current = next((v for v in versions if v.status == "production"), None)
        if current is None:
            raise RegistryRefusal(f"{family} has no production version to roll back")
        earlier = sorted((v for v in versions if v.status == "archived" and v.version < current.version),
                         key=lambda v: v.version)
        if not earlier:
            raise RegistryRefusal(f"{current.name} is the oldest production candidate of {family}; "
                                  "there is no earlier archived version to go back to")
        with self._connect() as connection:
            connection.execute("UPDATE model_versions SET status = 'archived' WHERE name = ?", (current.name,))
            connection.execute("UPDATE model_versions SET status = 'production' WHERE name = ?",
                               (earlier[-1].name,))
        return self.get(current.name), self.get(earlier[-1].name)

    def delete(self, name: str, force: bool = False) -> ModelVersion:
        """Remove a version's row (its files are the caller's); production is refused unless forced."""
        version = self.get(name)
        if version.status == "production" and not force:
            raise RegistryRefusal(f"{name} is in production; roll back or promote another version first, "
                                  "or delete it with force")
        with self._connect() as connection:
            connection.execute("DELETE FROM model_versions WHERE name = ?", (name,))
        return version

    @staticmethod
    def _from_row(row: sqlite3.Row) -> ModelVersion:
        record = dict(row)
        for key in _JSON_FIELDS:
            record[key] = json.loads(record[key])
        record["gates_passed"] = bool(record["gates_passed"])
        return ModelVersion(**record)


def family_name(base_model: str, subject: str) -> str:
    """The name every version of one tuned model shares: ft-<base>-<subject-slug>."""
    return f"ft-{model_key(base_model)}-{slugify(subject, 32)}"


#END
