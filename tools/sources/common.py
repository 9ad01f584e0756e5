"""Small pieces every remote source shares: the search report and text helpers."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class SearchReport:
    """What the last `search` did, so an empty or short result always carries its reason.

    Sources keep the last one as `source.last_report`; the researcher records it in the job
    report next to the references it got.
    """

    source: str
    query: str
    total: int | None = None  # how many the service says match (None: it does not say)
    returned: int = 0
    reason: str = ""  # why nothing, or fewer than asked, came back
    skipped: tuple[tuple[str, str], ...] = ()  # (native_id, reason) for hits left out
    details: dict[str, Any] = field(default_factory=dict)


def squash_whitespace(text: str) -> str:
    """Collapse runs of whitespace (feeds wrap abstracts over indented lines)."""
    return re.sub(r"\s+", " ", text).strip()


def join_paragraphs(*parts: str) -> str:
    """Join non-empty parts with blank lines."""
    return "\n\n".join(part.strip() for part in parts if part and part.strip())
