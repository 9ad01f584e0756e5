"""Wikipedia articles through the MediaWiki action API, called via our HTTP layer.

These are the same calls the `wikipedia-api` package makes (GET `…/w/api.php` with
`format=json&redirects=1` first; `list=search` to find pages; `prop=extracts` with
`explaintext=1&exsectionformat=wiki` for the text), but sent through our HTTP layer so they are
cached, paced and retried, and so the base URL is a plain setting (the package has no base-URL
option; CLIENT_HTTP_BEHAVIOUR.md). The package itself is therefore not a dependency. One extract call
also asks for `pageprops=disambiguation`, so missing and disambiguation pages are caught without a second request.

The page text keeps its sections as Markdown headings (`## History`), which the chunker uses;
reference-list sections ("References", "External links" …) are dropped. `related()` is the
one-hop expansion: the pages an article links to, most-mentioned first.
"""

from __future__ import annotations

import html
import json
import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from tools.sources.common import SearchReport, squash_whitespace
from tools.sources.documents import Document, Reference, SourceError
from tools.sources.http import HttpClient, HttpStatusError, host_key

LICENCE = "CC BY-SA 4.0"
HEADING = re.compile(r"^(={2,6})\s*(.*?)\s*\1\s*$")
TAG = re.compile(r"<[^>]+>")
BOILERPLATE_SECTIONS = frozenset(
    {
        "see also",
        "references",
        "external links",
        "further reading",
        "notes",
        "sources",
        "bibliography",
        "citations",
        "footnotes",
        "notes and references",
    }
)


@dataclass(frozen=True)
class WikipediaSettings:
    """Which wiki to ask and how politely."""

    language: str = "en"
    api_url: str | None = None  # default: https://{language}.wikipedia.org/w/api.php
    min_interval_s: float = 0.1  # Wikimedia asks API clients to go gently
    max_link_pages: int = 5  # `related()`: at most this many `plcontinue` pages of links
    drop_sections: frozenset[str] = BOILERPLATE_SECTIONS

    @property
    def endpoint(self) -> str:
        """The api.php URL in use."""
        return self.api_url or f"https://{self.language}.wikipedia.org/w/api.php"


@dataclass(frozen=True)
class Section:
    """One section of an article's plain-text extract."""

    level: int  # 1 for the lead, 2 for "== … ==", 3 for "=== … ===" …
    title: str
    text: str


def split_sections(extract: str) -> list[Section]:
    """Sections of an `exsectionformat=wiki` extract; the lead is level 1 with an empty title."""
    sections: list[Section] = []
    level, title, lines = 1, "", []
    for line in extract.splitlines():
        match = HEADING.match(line.strip())
        if match:
            sections.append(Section(level, title, "\n".join(lines).strip()))
            level, title, lines = len(match.group(1)), match.group(2), []
        else:
            lines.append(line)
    sections.append(Section(level, title, "\n".join(lines).strip()))
    return [s for s in sections if s.text or s.title]


def render_sections(sections: list[Section], drop: frozenset[str]) -> str:
    """Article text with Markdown headings, without dropped sections (and their subsections)."""
    parts: list[str] = []
    dropping_below: int | None = None
    for section in sections:
        if dropping_below is not None and section.level > dropping_below:
            continue
        dropping_below = section.level if section.title.lower() in drop else None
        if dropping_below is not None:
            continue
        heading = f"{'#' * section.level} {section.title}" if section.title else ""
        parts.append(f"{heading}\n\n{section.text}".strip())
    return "\n\n".join(parts)


def page_url(language: str, title: str) -> str:
    """The article's canonical URL."""
    return f"https://{language}.wikipedia.org/wiki/{quote(title.replace(' ', '_'), safe='()_,:')}"


def api_error(payload: dict[str, Any]) -> str | None:
    """ "code: info" when the API answered with an error object (it does so with HTTP 200)."""
    error = payload.get("error")
    if not error:
        return None
    return f"{error.get('code', 'error')}: {error.get('info', '')}".strip()


def single_page(payload: dict[str, Any], title: str) -> dict[str, Any]:
    """The one page of a `titles=` query; missing/invalid pages raise `SourceError`."""
    pages = list((payload.get("query") or {}).get("pages", {}).values())
    what = f"wikipedia:{title}"
    if not pages:
        raise SourceError(what, "the API answer has no page")
    page = pages[0]
    if "missing" in page:
        raise SourceError(what, f"no Wikipedia page titled {page.get('title', title)!r}")
    if "invalid" in page:
        raise SourceError(what, f"invalid title: {page.get('invalidreason', '')}")
    if "disambiguation" in (page.get("pageprops") or {}):
        raise SourceError(
            what,
            f"{page.get('title', title)!r} is a disambiguation page; "
            "search for a more specific title",
        )
    return page


class WikipediaSource:
    """`Source` for Wikipedia. Failures raise `SourceError`; the last search's story is `last_report`."""

    name = "wikipedia"

    def __init__(self, http: HttpClient, settings: WikipediaSettings | None = None) -> None:
        self.http = http
        self.settings = settings or WikipediaSettings()
        self.last_report: SearchReport | None = None
        http.set_min_interval(host_key(self.settings.endpoint), self.settings.min_interval_s)

    def search(self, query: str, limit: int) -> list[Reference]:
        """Articles (namespace 0) matching `query`, by Wikipedia's relevance, at most `limit`."""
        params = {
            "action": "query",
            "list": "search",
            "srsearch": query,
            "srnamespace": "0",
            "srlimit": str(min(max(limit, 1), 500)),
            "srsort": "relevance",
        }
        payload = self._call(params, f"Wikipedia search {query!r}")
        found = payload.get("query", {})
        hits = found.get("search", [])[:limit]
        total = found.get("searchinfo", {}).get("totalhits")
        references = [self._hit_reference(hit) for hit in hits]
        self.last_report = SearchReport(
            self.name,
            query,
            total,
            len(references),
            self._empty_reason(found) if not references else "",
        )
        return references

    def fetch(self, reference: Reference) -> Document:
        """The article's plain text with its sections; missing/disambiguation pages raise."""
        page = self._extract_page(reference.native_id)
        title = page.get("title", reference.native_id)
        sections = split_sections(page.get("extract") or "")
        text = render_sections(sections, self.settings.drop_sections)
        if not text.strip():
            raise SourceError(f"wikipedia:{title}", "the page has no text")
        return Document(
            source=self.name,
            native_id=title,
            title=title,
            text=text,
            uri=page_url(self.settings.language, title),
            licence=LICENCE,
            metadata={
                "pageid": page.get("pageid"),
                "language": self.settings.language,
                "sections": [s.title for s in sections if s.title],
                "requested_title": reference.native_id,
            },
        )

    def related(self, reference: Reference, limit: int) -> list[Reference]:
        """One hop out: articles this page links to, those its text mentions most first."""
        title = reference.native_id
        links = self._links(title)
        try:
            text = self.fetch(reference).text.lower()
        except SourceError:
            text = ""  # without the text the links keep the API's (alphabetical) order
        candidates = [t for t in links if t != title and not t.endswith("(disambiguation)")]
        ranked = sorted(candidates, key=lambda t: -text.count(t.lower())) if text else candidates
        return [
            Reference(
                self.name,
                t,
                t,
                page_url(self.settings.language, t),
                {"related_to": title, "mentions": text.count(t.lower())},
            )
            for t in ranked[:limit]
        ]

    def _extract_page(self, title: str) -> dict[str, Any]:
        """One call: plain-text extract + disambiguation flag for `title`."""
        params = {
            "action": "query",
            "prop": "extracts|pageprops",
            "titles": title,
            "explaintext": "1",
            "exsectionformat": "wiki",
            "ppprop": "disambiguation",
        }
        return single_page(self._call(params, f"wikipedia:{title}"), title)

    def _links(self, title: str) -> list[str]:
        """Titles of the articles a page links to (namespace 0), following `plcontinue`."""
        params = {
            "action": "query",
            "prop": "links",
            "titles": title,
            "pllimit": "500",
            "plnamespace": "0",
        }
        titles: list[str] = []
        for _ in range(self.settings.max_link_pages):
            payload = self._call(params, f"wikipedia links of {title}")
            page = single_page(payload, title)
            titles.extend(link["title"] for link in page.get("links", []))
            cont = payload.get("continue", {}).get("plcontinue")
            if not cont:
                break
            params = {**params, "plcontinue": cont}
        return list(dict.fromkeys(titles))

    def _call(self, params: dict[str, str], what: str) -> dict[str, Any]:
        """GET api.php with the common parameters; JSON and API errors become `SourceError`."""
        query = {"format": "json", "redirects": "1", **params}
        try:
            response = self.http.get(self.settings.endpoint, params=query)
        except HttpStatusError as exc:
            raise SourceError(what, exc.reason) from None
        try:
            payload = json.loads(response.content)
        except ValueError as exc:
            raise SourceError(what, f"the API answer is not JSON: {exc}") from None
        if not isinstance(payload, dict):
            raise SourceError(what, "the API answer is not a JSON object")
        message = api_error(payload)
        if message:
            raise SourceError(what, f"MediaWiki API error {message}")
        return payload

    def _hit_reference(self, hit: dict[str, Any]) -> Reference:
        """A Reference from one `list=search` hit."""
        snippet = squash_whitespace(html.unescape(TAG.sub("", hit.get("snippet", ""))))
        return Reference(
            source=self.name,
            native_id=hit["title"],
            title=hit["title"],
            uri=page_url(self.settings.language, hit["title"]),
            metadata={
                "pageid": hit.get("pageid"),
                "snippet": snippet,
                "wordcount": hit.get("wordcount"),
                "timestamp": hit.get("timestamp", ""),
            },
        )

    @staticmethod
    def _empty_reason(found: dict[str, Any]) -> str:
        """Why a search found nothing, with Wikipedia's spelling suggestion when it gives one."""
        suggestion = found.get("searchinfo", {}).get("suggestion")
        if suggestion:
            return f"Wikipedia found no articles; it suggests {suggestion!r}"
        return "Wikipedia found no articles for this query"
