"""API tokens, one per user: who a remote caller is comes from the token they present, nothing else.

A token is 32 random bytes (URL-safe base64), shown once when it is made; the table keeps only its
SHA-256, so a copy of the database does not let anyone call the API. A high-entropy random token needs
no slow hash (there is nothing to guess); comparing digests also makes the lookup constant-time in the
token. Revoking keeps the row (who had access, until when) and frees the name for a new token.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from dataclasses import asdict, dataclass
from typing import Any

from tools.stores.sql_table import SqlTable, now_iso

_SCHEMA = """
CREATE TABLE IF NOT EXISTS api_tokens (
    token_id INTEGER PRIMARY KEY AUTOINCREMENT, name TEXT NOT NULL, token_sha256 TEXT NOT NULL UNIQUE,
    admin INTEGER NOT NULL DEFAULT 0, created_at TEXT NOT NULL, revoked_at TEXT
)"""
NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$")


class TokenError(ValueError):
    """A token name that cannot be used (malformed, already taken, unknown)."""


@dataclass(frozen=True)
class Caller:
    """Who is calling a remote door: a user name and whether they may see and change everything."""

    user: str
    admin: bool = False


@dataclass
class TokenRecord:
    name: str
    admin: bool
    created_at: str
    revoked_at: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def token_digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


class TokenStore(SqlTable):
    """The api_tokens table in the home's database."""

    schema = _SCHEMA
    postgres_schema = _SCHEMA.replace("INTEGER PRIMARY KEY AUTOINCREMENT", "BIGSERIAL PRIMARY KEY")

    def add(self, name: str, admin: bool = False) -> str:
        """Make a token for `name` and return it (the only time it is seen); TokenError if the name is
        malformed or already has a live token."""
        if not NAME_PATTERN.match(name):
            raise TokenError(f"token name {name!r} must be 1-64 letters, digits or . _ @ - "
                             "(starting with a letter or digit)")
        token = secrets.token_urlsafe(32)
        with self._connect() as connection:
            connection.execute("BEGIN IMMEDIATE")
            if connection.execute("SELECT 1 FROM api_tokens WHERE name = ? AND revoked_at IS NULL",
                                  (name,)).fetchone():
                raise TokenError(f"{name} already has a token; revoke it first (ftagent token revoke {name})")
            connection.execute("INSERT INTO api_tokens (name, token_sha256, admin, created_at) VALUES (?, ?, ?, ?)",
                               (name, token_digest(token), int(admin), now_iso()))
        return token

    def revoke(self, name: str) -> TokenRecord:
        """Revoke `name`'s live token; TokenError if it has none."""
        with self._connect() as connection:
            row = connection.execute("SELECT * FROM api_tokens WHERE name = ? AND revoked_at IS NULL",
                                     (name,)).fetchone()
            if row is None:
                raise TokenError(f"no live token named {name!r} (see ftagent token list)")
            revoked_at = now_iso()
            connection.execute("UPDATE api_tokens SET revoked_at = ? WHERE token_id = ?",
                               (revoked_at, row["token_id"]))
        return TokenRecord(row["name"], bool(row["admin"]), row["created_at"], revoked_at)

    def list(self, include_revoked: bool = False) -> list[TokenRecord]:
        query = "SELECT * FROM api_tokens" + ("" if include_revoked else " WHERE revoked_at IS NULL")
        with self._connect() as connection:
            return [self._record(row) for row in connection.execute(query + " ORDER BY name, token_id")]

    def caller(self, token: str) -> Caller | None:
        """The caller a presented token stands for, or None for an unknown or revoked one."""
        with self._connect() as connection:
            row = connection.execute("SELECT name, admin FROM api_tokens WHERE token_sha256 = ? "
                                     "AND revoked_at IS NULL", (token_digest(token),)).fetchone()
        return Caller(row["name"], bool(row["admin"])) if row else None

    @staticmethod
    def _record(row: Any) -> TokenRecord:
        return TokenRecord(row["name"], bool(row["admin"]), row["created_at"], row["revoked_at"])
