"""Sources by name: `build_source("arxiv", settings)` and friends.

All remote sources of a job should share one `HttpClient` (one cache, one set of per-host
pacers); pass it in, or let `build_source` make one from `settings.http`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from tools.sources.arxiv_source import ArxivSettings, ArxivSource
from tools.sources.base import Source
from tools.sources.documents import SourceError
from tools.sources.http import HttpClient, HttpSettings
from tools.sources.names import SOURCE_NAMES
from tools.sources.pubmed_source import PubMedSettings, PubMedSource
from tools.sources.web_source import WebSettings, WebSource
from tools.sources.wikipedia_source import WikipediaSettings, WikipediaSource


@dataclass(frozen=True)
class SourcesSettings:
    """Settings for every source, and the HTTP layer they share."""

    http: HttpSettings = field(default_factory=HttpSettings)
    arxiv: ArxivSettings = field(default_factory=ArxivSettings)
    pubmed: PubMedSettings = field(default_factory=PubMedSettings)
    wikipedia: WikipediaSettings = field(default_factory=WikipediaSettings)
    web: WebSettings = field(default_factory=WebSettings)
    local_path: Path | None = None  # folder (or file) for the "local" source


def build_http(settings: SourcesSettings) -> HttpClient:
    """The HTTP client a job's sources share."""
    return HttpClient(settings.http)


def build_source(name: str, settings: SourcesSettings, http: HttpClient | None = None) -> Source:
    """The source called `name`; an unknown name or a missing local folder raises `SourceError`."""
    if name == "local":
        return _local_source(settings)
    client = http or build_http(settings)
    if name == "arxiv":
        return ArxivSource(client, settings.arxiv)
    if name == "pubmed":
        return PubMedSource(client, settings.pubmed)
    if name == "wikipedia":
        return WikipediaSource(client, settings.wikipedia)
    if name == "web":
        return WebSource(client, settings.web)
    raise SourceError(name, f"unknown source; choose one of {', '.join(SOURCE_NAMES)}")


def _local_source(settings: SourcesSettings) -> Source:
    """The local folder source (tools.sources.local), imported only when asked for."""
    if settings.local_path is None:
        raise SourceError("local", "no folder given (settings.local_path)")
    try:
        from tools.sources.local import LocalFolderSource
    except ImportError as exc:
        raise SourceError("local", f"local folder source unavailable: {exc}") from None
    return LocalFolderSource(settings.local_path)
