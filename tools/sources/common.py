"""Small pieces every remote source shares: the search report and text helpers."""

from __future__ import annotations

import io
import re
from dataclasses import dataclass, field
from typing import Any

from tools.sources.documents import SourceError


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


def pdf_text(content: bytes, max_pages: int, what: str) -> tuple[str, int]:
    """(text, pages read) of a PDF with pypdf; a non-PDF or unreadable file raises `SourceError`."""
    from pypdf import PdfReader
    from pypdf.errors import PyPdfError

    if not content.startswith(b"%PDF"):
        raise SourceError(what, "not a PDF (no %PDF header)")
    try:
        reader = PdfReader(io.BytesIO(content))
        pages = reader.pages[:max_pages]
        text = "\n\n".join((page.extract_text() or "").strip() for page in pages)
    except (PyPdfError, ValueError, KeyError, TypeError) as exc:
        raise SourceError(what, f"unreadable PDF: {exc!r}") from None
    if not text.strip():
        raise SourceError(what, "PDF has no extractable text (scanned?)")
    return text, len(pages)
