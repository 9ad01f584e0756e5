"""Small pieces every remote source shares: the search report and text helpers."""

from __future__ import annotations

import io
import re
from collections import Counter
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


def without_running_lines(pages: list[str]) -> list[str]:
    """Each PDF page's text without its running head and foot: a line among a page's first or last two
    that recurs, digits aside, on at least half of the pages (two or more). Left in, "Fault-tolerant quantum
    computing - page 1" cuts a sentence in two where the page breaks and reads as a section heading."""
    if len(pages) < 2:
        return pages
    edges = [_edge_lines(page) for page in pages]
    seen = Counter(key for lines in edges for key in {_line_key(line) for line in lines})
    recurring = {key for key, pages_with in seen.items() if key and pages_with >= max(2, len(pages) / 2)}
    return ["\n".join(line for line in page.splitlines() if not (line in lines and _line_key(line) in recurring))
            for page, lines in zip(pages, edges, strict=True)]


def join_pages(pages: list[str]) -> str:
    """A PDF's pages as one text, running heads and feet left out; a page that ends mid-sentence runs on
    into the next (a blank line between them would split the sentence into two paragraphs)."""
    text = ""
    for page in (p.strip() for p in without_running_lines(pages)):
        if page:
            text += ("" if not text else "\n\n" if text.endswith((".", "!", "?", ":")) else "\n") + page
    return text


def _edge_lines(page: str) -> set[str]:
    lines = [line for line in page.splitlines() if line.strip()]
    return set(lines[:2] + lines[-2:])


def _line_key(line: str) -> str:
    return re.sub(r"\d+", "#", " ".join(line.lower().split()))


def pdf_text(content: bytes, max_pages: int, what: str) -> tuple[str, int]:
    """(text, pages read) of a PDF with pypdf; a non-PDF or unreadable file raises `SourceError`."""
    from pypdf import PdfReader
    from pypdf.errors import PyPdfError

    if not content.startswith(b"%PDF"):
        raise SourceError(what, "not a PDF (no %PDF header)")
    try:
        reader = PdfReader(io.BytesIO(content))
        pages = reader.pages[:max_pages]
        text = join_pages([page.extract_text() or "" for page in pages])
    except (PyPdfError, ValueError, KeyError, TypeError) as exc:
        raise SourceError(what, f"unreadable PDF: {exc!r}") from None
    if not text.strip():
        raise SourceError(what, "PDF has no extractable text (scanned?)")
    return text, len(pages)
