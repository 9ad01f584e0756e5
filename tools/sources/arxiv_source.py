"""arXiv papers: search and fetch through the arXiv API (Atom feed).

Requests go through our HTTP layer (cache, pacing, retries), not the `arxiv` package's own
requests session (which has no timeout); the bytes are parsed with the `arxiv` package's
Atom parser (`arxiv._feed.parse`, arxiv >= 4.0; private module, so the import is kept in
one place). Query parameters follow what `arxiv.Client` sends, in the same order.

arXiv asks for at most one request every three seconds, so the API host is paced at
`delay_s` (default 3 s). Abstracts are CC0; full text from the PDF is off by default and,
when on, a PDF failure is recorded on the document rather than failing it.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from lxml import etree

from tools.sources.common import SearchReport, join_paragraphs, pdf_text, squash_whitespace
from tools.sources.documents import Document, Reference, SourceError
from tools.sources.http import HttpClient, HttpStatusError, host_key

if TYPE_CHECKING:
    from arxiv import Result

ATOM = "{http://www.w3.org/2005/Atom}"
ARXIV_ERRORS_MARK = "/api/errors"
ABSTRACT_LICENCE = "CC0-1.0 (arXiv metadata and abstract)"
FIELD_PREFIX = re.compile(r"\b(ti|au|abs|co|jr|cat|rn|id|all|submittedDate):|\b(AND|OR|ANDNOT)\b")


@dataclass(frozen=True)
class ArxivSettings:
    """Where and how to ask arXiv."""

    api_url: str = "https://export.arxiv.org/api/query"
    pdf_url_template: str = "https://arxiv.org/pdf/{id}"
    delay_s: float = 3.0  # arXiv's terms: no more than one request every three seconds
    page_size: int = 100
    sort_by: str = "relevance"  # relevance | lastUpdatedDate | submittedDate
    sort_order: str = "descending"
    full_text: bool = False  # also download the PDF and extract its text (pypdf)
    max_pdf_pages: int = 60


def to_search_query(query: str) -> str:
    """arXiv `search_query` for free text: words ANDed over all fields; field syntax kept as is."""
    if FIELD_PREFIX.search(query):
        return query
    words = query.split()
    if len(words) <= 1:
        return query.strip()
    return " AND ".join(f"all:{word}" for word in words)


def feed_error(content: bytes) -> str | None:
    """The message of an arXiv error feed (an entry whose id points at /api/errors), if any.

    Raises `SourceError` when the body is not well-formed XML (truncated or not a feed).
    """
    try:
        root = etree.fromstring(
            content, parser=etree.XMLParser(resolve_entities=False, no_network=True)
        )
    except etree.XMLSyntaxError as exc:
        raise SourceError("arXiv feed", f"malformed XML: {exc}") from None
    if root.tag != f"{ATOM}feed":
        raise SourceError("arXiv feed", f"not an Atom feed (root element {root.tag!r})")
    for entry in root.iter(f"{ATOM}entry"):
        if ARXIV_ERRORS_MARK in (entry.findtext(f"{ATOM}id") or ""):
            return squash_whitespace(entry.findtext(f"{ATOM}summary") or "unknown error")
    return None


def parse_feed(content: bytes) -> tuple[int, list[Result]]:
    """(totalResults, results) of an arXiv Atom feed; error feeds and bad XML raise `SourceError`."""
    from arxiv import _feed

    message = feed_error(content)
    if message is not None:
        raise SourceError("arXiv query", f"arXiv API error: {message}")
    parsed = _feed.parse(bytes(content))
    if parsed.malformed:
        raise SourceError("arXiv feed", f"malformed feed: {parsed.error}")
    return parsed.header.total_results, parsed.results


def result_metadata(result: Result) -> dict[str, Any]:
    """JSON-friendly metadata for a Reference / Document from a parsed arXiv result."""
    return {
        "arxiv_id": result.get_short_id(),
        "abstract": squash_whitespace(result.summary),
        "authors": [author.name for author in result.authors],
        "published": result.published.isoformat(),
        "updated": result.updated.isoformat(),
        "primary_category": result.primary_category,
        "categories": list(result.categories),
        "comment": result.comment or "",
        "journal_ref": result.journal_ref or "",
        "doi": result.doi or "",
        "links": [link.href for link in result.links],
        "pdf_url": result.pdf_url or "",
    }


def result_reference(result: Result) -> Reference:
    """A Reference carrying everything needed to build the Document without another request."""
    metadata = result_metadata(result)
    return Reference(
        source="arxiv",
        native_id=metadata["arxiv_id"],
        title=squash_whitespace(result.title),
        uri=f"https://arxiv.org/abs/{metadata['arxiv_id']}",
        metadata=metadata,
    )


class ArxivSource:
    """`Source` for arXiv. Failures raise `SourceError`; the last search's story is `last_report`."""

    name = "arxiv"

    def __init__(self, http: HttpClient, settings: ArxivSettings | None = None) -> None:
        self.http = http
        self.settings = settings or ArxivSettings()
        self.last_report: SearchReport | None = None
        http.set_min_interval(host_key(self.settings.api_url), self.settings.delay_s)
        http.set_min_interval(host_key(self.settings.pdf_url_template), self.settings.delay_s)

    def search(self, query: str, limit: int) -> list[Reference]:
        """Papers matching `query`, best first (arXiv relevance), at most `limit`."""
        references: list[Reference] = []
        total: int | None = None
        reason = ""
        while len(references) < limit:
            page_size = min(self.settings.page_size, limit - len(references))
            total, results = self._query(to_search_query(query), (), len(references), page_size)
            if not results:
                reason = self._empty_reason(total, len(references))
                break
            references.extend(result_reference(result) for result in results)
            if len(references) >= total:
                break
        references = references[:limit]
        self.last_report = SearchReport(self.name, query, total, len(references), reason)
        return references

    def lookup(self, ids: Sequence[str]) -> list[Reference]:
        """References for explicit arXiv ids (new or old style, with or without version)."""
        if not ids:
            return []
        _, results = self._query("", ids, 0, len(ids))
        return [result_reference(result) for result in results]

    def fetch(self, reference: Reference) -> Document:
        """Title + abstract (+ PDF text when `full_text` is on) with authors, dates, categories."""
        if "abstract" not in reference.metadata:
            found = self.lookup([reference.native_id])
            if not found:
                raise SourceError(f"arxiv:{reference.native_id}", "arXiv has no paper with this id")
            reference = found[0]
        metadata = dict(reference.metadata)
        text = join_paragraphs(reference.title, metadata["abstract"])
        licence = ABSTRACT_LICENCE
        if self.settings.full_text:
            text, licence = self._add_full_text(reference, metadata, text)
        if not metadata["abstract"] and not metadata.get("full_text"):
            raise SourceError(f"arxiv:{reference.native_id}", "entry has no abstract")
        return Document(
            source=self.name,
            native_id=reference.native_id,
            title=reference.title,
            text=text,
            uri=reference.uri,
            authors=tuple(metadata["authors"]),
            published=metadata["published"][:10],
            licence=licence,
            metadata=metadata,
        )

    def _add_full_text(
        self, reference: Reference, metadata: dict[str, Any], text: str
    ) -> tuple[str, str]:
        """Append PDF text; on failure keep the abstract and record why in the metadata."""
        url = self.settings.pdf_url_template.format(id=reference.native_id)
        try:
            body, pages = pdf_text(self.http.get(url).content, self.settings.max_pdf_pages, url)
        except SourceError as exc:
            metadata.update(full_text=False, full_text_error=exc.reason)
            return text, ABSTRACT_LICENCE
        metadata.update(full_text=True, pdf_pages=pages)
        licence = f"see https://arxiv.org/abs/{reference.native_id} (full text); abstract CC0-1.0"
        return join_paragraphs(text, body), licence

    def _query(
        self, search_query: str, ids: Sequence[str], start: int, max_results: int
    ) -> tuple[int, list[Result]]:
        """One API page; HTTP 400 error feeds become a `SourceError` with arXiv's message."""
        params = {
            "search_query": search_query,
            "id_list": ",".join(ids),
            "sortBy": self.settings.sort_by,
            "sortOrder": self.settings.sort_order,
            "start": str(start),
            "max_results": str(max_results),
        }
        what = f"arXiv query {search_query or ','.join(ids)!r}"
        try:
            response = self.http.get(self.settings.api_url, params=params)
        except HttpStatusError as exc:
            raise SourceError(what, self._status_reason(exc)) from None
        try:
            return parse_feed(response.content)
        except SourceError as exc:
            raise SourceError(what, exc.reason) from None

    @staticmethod
    def _status_reason(exc: HttpStatusError) -> str:
        """arXiv's own error message when the error body is an error feed, else the status."""
        try:
            message = feed_error(exc.body)
        except SourceError:
            message = None
        return f"arXiv API error: {message} ({exc.reason})" if message else exc.reason

    @staticmethod
    def _empty_reason(total: int, already: int) -> str:
        """Why a page came back empty."""
        if total == 0:
            return "arXiv found no papers for this query"
        if already < total:
            return f"arXiv returned an empty page at start={already} although it reports {total}"
        return ""
