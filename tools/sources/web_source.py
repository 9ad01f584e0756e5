"""Web pages the user named: fetched through our HTTP layer, main content by trafilatura.

There is no web search here: the references are the URLs the job was given (the query is
ignored, the curator judges relevance). Each site's robots.txt is fetched once (through the
same HTTP layer, so it is cached) and honoured with `urllib.robotparser`; per RFC 9309 a
robots.txt that is absent (4xx) allows everything and one that errors (5xx) disallows
everything. A `Crawl-delay` becomes the host's minimum interval.

Pages are decoded by BOM, then the HTTP charset, then the `<meta>` charset, then UTF-8,
then charset detection, so Latin-1 or Shift_JIS pages come out right. PDF and plain-text
URLs are handled too.

URLs a remote caller named (`public_only`) are fetched only from public addresses, robots.txt
and every redirect hop included (see tools/sources/http.py); bodies are capped by the HTTP layer.
"""

from __future__ import annotations

import codecs
import re
from dataclasses import dataclass
from urllib.parse import urlsplit
from urllib.robotparser import RobotFileParser

import httpx

from tools.sources.common import SearchReport, pdf_text
from tools.sources.documents import Document, Reference, SourceError
from tools.sources.http import HttpClient, HttpStatusError, host_key

ROBOTS_AGENT = "ftagent"
SINGLE_BYTE_LATIN = frozenset(
    {
        "cp1250",
        "cp1252",
        "cp1254",
        "cp1257",
        "latin_1",
        "iso8859_2",
        "iso8859_3",
        "iso8859_4",
        "iso8859_9",
        "iso8859_10",
        "iso8859_13",
        "iso8859_14",
        "iso8859_15",
        "iso8859_16",
        "mac_roman",
        "mac_latin2",
        "ascii",
    }
)
META_CHARSET = re.compile(rb"""<meta[^>]+charset\s*=\s*["']?\s*([A-Za-z0-9_.:-]+)""", re.IGNORECASE)
BOMS = (
    (codecs.BOM_UTF8, "utf-8-sig"),
    (codecs.BOM_UTF16_LE, "utf-16"),
    (codecs.BOM_UTF16_BE, "utf-16"),
)


@dataclass(frozen=True)
class WebSettings:
    """Which pages to read and how."""

    urls: tuple[str, ...] = ()
    respect_robots: bool = True
    min_text_chars: int = 200  # less main text than this is not a document
    max_pdf_pages: int = 60
    public_only: bool = False  # refuse loopback/private/link-local hosts at every hop (remote doors)


def _codec(name: str | None) -> str | None:
    """The Python codec for a charset label, or None when unknown."""
    if not name:
        return None
    try:
        return codecs.lookup(name.strip().strip("\"'")).name
    except LookupError:
        return None


def declared_charset(content: bytes, content_type: str | None) -> str | None:
    """The charset a page declares: BOM, then HTTP Content-Type, then <meta> (None if none)."""
    for bom, name in BOMS:
        if content.startswith(bom):
            return name
    if content_type:
        match = re.search(r"charset\s*=\s*([^\s;]+)", content_type, re.IGNORECASE)
        if match and _codec(match.group(1)):
            return _codec(match.group(1))
    meta = META_CHARSET.search(content[:4096])
    return _codec(meta.group(1).decode("ascii", "ignore")) if meta else None


def decode_page(content: bytes, content_type: str | None) -> str:
    """Page bytes to text, honouring the declared charset and guessing well when there is none."""
    declared = declared_charset(content, content_type)
    if declared:
        return content.decode(declared, errors="replace")
    try:
        return content.decode("utf-8")
    except UnicodeDecodeError:
        pass
    try:
        from charset_normalizer import from_bytes
    except ImportError:  # not a declared dependency; cp1252 is the web's usual fallback
        return content.decode("cp1252", errors="replace")
    best = from_bytes(content).best()
    # Detection tells Western single-byte code pages apart badly (French in cp1252 comes back
    # as cp1250), so it is only trusted for other scripts; Latin text gets the HTML5 default.
    if best is None or best.encoding in SINGLE_BYTE_LATIN:
        return content.decode("cp1252", errors="replace")
    return str(best)


def main_text(html: str, url: str) -> tuple[str, str, dict[str, str]]:
    """(main text as Markdown, title, metadata) of an HTML page, by trafilatura."""
    import trafilatura

    text = (
        trafilatura.extract(
            html,
            url=url,
            output_format="markdown",
            include_comments=False,
            include_tables=True,
            favor_recall=True,
        )
        or ""
    )
    meta = trafilatura.extract_metadata(html, default_url=url)
    details = {}
    if meta is not None:
        details = {
            k: str(getattr(meta, k))
            for k in ("author", "date", "sitename", "license")
            if getattr(meta, k, None)
        }
    title = (meta.title if meta is not None and meta.title else "") or ""
    return text, title, details


class RobotsPolicy:
    """robots.txt rules per site, fetched once each through the HTTP layer."""

    def __init__(self, http: HttpClient, agent: str = ROBOTS_AGENT, public_only: bool = False) -> None:
        self.http = http
        self.agent = agent
        self.public_only = public_only
        self._parsers: dict[str, RobotFileParser] = {}

    def allows(self, url: str) -> bool:
        """Whether our agent may fetch `url`."""
        return self._parser_for(url).can_fetch(self.agent, url)

    def _parser_for(self, url: str) -> RobotFileParser:
        parts = urlsplit(url)
        origin = f"{parts.scheme}://{parts.netloc}"
        if origin not in self._parsers:
            self._parsers[origin] = self._load(origin)
        return self._parsers[origin]

    def _load(self, origin: str) -> RobotFileParser:
        """Parse the site's robots.txt; absent allows all, a server error disallows all."""
        parser = RobotFileParser(f"{origin}/robots.txt")
        try:
            response = self.http.get(f"{origin}/robots.txt", public_only=self.public_only)
        except HttpStatusError as exc:
            if exc.status_code >= 500:
                parser.disallow_all = True
            else:
                parser.allow_all = True
            return parser
        parser.parse(
            decode_page(response.content, response.headers.get("content-type")).splitlines()
        )
        delay = parser.crawl_delay(self.agent)
        if delay:
            self.http.set_min_interval(host_key(origin), float(delay))
        return parser


class WebSource:
    """`Source` for named URLs. Failures raise `SourceError` with the URL and the reason."""

    name = "web"

    def __init__(self, http: HttpClient, settings: WebSettings | None = None) -> None:
        self.http = http
        self.settings = settings or WebSettings()
        self.robots = RobotsPolicy(http, public_only=self.settings.public_only)
        self.last_report: SearchReport | None = None

    def search(self, query: str, limit: int) -> list[Reference]:
        """The configured URLs (first `limit`); the query is not used, there is no web search."""
        urls = list(dict.fromkeys(self.settings.urls))[:limit]
        reason = "" if urls else "no URLs were given to the web source"
        self.last_report = SearchReport(
            self.name, query, len(self.settings.urls), len(urls), reason
        )
        return [Reference(source=self.name, native_id=url, title=url, uri=url) for url in urls]

    def fetch(self, reference: Reference) -> Document:
        """Main text of the page at the reference's URL (robots.txt permitting)."""
        url = reference.native_id
        if urlsplit(url).scheme not in ("http", "https"):
            raise SourceError(url, "only http(s) URLs can be fetched")
        if self.settings.respect_robots and not self.robots.allows(url):
            raise SourceError(url, "robots.txt disallows fetching this URL")
        response = self.http.get(url, public_only=self.settings.public_only)
        text, title, details = self._extract(response, url)
        if len(text.strip()) < self.settings.min_text_chars:
            raise SourceError(
                url,
                f"only {len(text.strip())} characters of main text "
                f"(minimum {self.settings.min_text_chars})",
            )
        return Document(
            source=self.name,
            native_id=url,
            title=title or reference.title or url,
            text=text,
            uri=str(response.url),
            authors=(details["author"],) if "author" in details else (),
            published=details.get("date"),
            licence=details.get("license"),
            metadata={"content_type": response.headers.get("content-type", ""), **details},
        )

    def _extract(self, response: httpx.Response, url: str) -> tuple[str, str, dict[str, str]]:
        """Text, title and details by content type: PDF, plain text, or HTML."""
        content_type = response.headers.get("content-type", "").lower()
        if "pdf" in content_type or response.content.startswith(b"%PDF"):
            text, pages = pdf_text(response.content, self.settings.max_pdf_pages, url)
            return text, "", {"pdf_pages": str(pages)}
        decoded = decode_page(response.content, content_type)
        if content_type.startswith("text/plain"):
            return decoded, "", {}
        return main_text(decoded, url)
