"""The source registry: every name builds the right source, sharing one HTTP client."""

from __future__ import annotations

from pathlib import Path

import pytest

from tools.sources.arxiv_source import ArxivSettings, ArxivSource
from tools.sources.documents import SourceError
from tools.sources.http import HttpClient, HttpSettings
from tools.sources.pubmed_source import PubMedSource
from tools.sources.registry import SOURCE_NAMES, SourcesSettings, build_source
from tools.sources.web_source import WebSource
from tools.sources.wikipedia_source import WikipediaSource


@pytest.mark.parametrize(
    ("name", "kind"),
    [
        ("arxiv", ArxivSource),
        ("pubmed", PubMedSource),
        ("wikipedia", WikipediaSource),
        ("web", WebSource),
    ],
)
def test_remote_sources_share_the_given_client(name: str, kind: type) -> None:
    http = HttpClient(HttpSettings())
    source = build_source(name, SourcesSettings(), http=http)
    assert isinstance(source, kind)
    assert source.name == name
    assert source.http is http  # type: ignore[attr-defined]


def test_settings_reach_the_source() -> None:
    settings = SourcesSettings(arxiv=ArxivSettings(delay_s=7.0, api_url="https://arxiv.test/q"))
    source = build_source("arxiv", settings)
    assert source.http.pacer.interval("arxiv.test") == 7.0  # type: ignore[attr-defined]


def test_local_source_needs_a_folder(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match="no folder"):
        build_source("local", SourcesSettings())
    (tmp_path / "note.md").write_text("# Note\n\nSurface codes are topological codes.\n")
    source = build_source("local", SourcesSettings(local_path=tmp_path))
    assert source.name == "local"
    assert [ref.title for ref in source.search("anything", 5)] == ["note"]


def test_unknown_name_lists_the_choices() -> None:
    with pytest.raises(SourceError) as raised:
        build_source("scholar", SourcesSettings())
    assert all(name in raised.value.reason for name in SOURCE_NAMES)
