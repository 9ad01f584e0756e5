"""WikipediaSource against a local server replaying recorded MediaWiki API answers."""

from __future__ import annotations

from pathlib import Path

import pytest
from replay_server import (
    ReplayServer,
    Reply,
    fast_http,
    fixture_bytes,
    goldsmith_call,
    goldsmith_response,
)

from tools.sources.documents import Reference, SourceError
from tools.sources.http import HttpClient, HttpSettings
from tools.sources.wikipedia_source import WikipediaSettings, WikipediaSource, split_sections

API = "/w/api.php"
JSON = {"Content-Type": "application/json; charset=utf-8"}
PYTHON = "Python (programming language)"


def wiki(name: str) -> Reply:
    return Reply(200, fixture_bytes(f"wikipedia/{name}"), JSON)


def make_source(
    server: ReplayServer, tmp_path: Path, **overrides: object
) -> tuple[WikipediaSource, HttpClient]:
    http = fast_http(tmp_path, server)
    values: dict[str, object] = {"api_url": f"{server.url}{API}"}
    values.update(overrides)
    return WikipediaSource(http, WikipediaSettings(**values)), http  # type: ignore[arg-type]


def is_search(query: dict[str, str]) -> bool:
    return query.get("list") == "search"


def extract_of(title: str) -> dict[str, str]:
    return {"prop": "extracts|pageprops", "titles": title}


def test_search_returns_articles_with_snippets(server: ReplayServer, tmp_path: Path) -> None:
    server.add(API, wiki("wikiapi_search_default.json"), match=is_search)
    source, _ = make_source(server, tmp_path)

    references = source.search("Python programming", limit=3)

    assert [r.native_id for r in references] == [
        PYTHON,
        "History of Python",
        "Outline of the Python programming language",
    ]
    assert references[0].metadata["snippet"].startswith("Python is a high-level, general-purpose")
    assert "<span" not in references[0].metadata["snippet"]
    assert references[0].uri == "https://en.wikipedia.org/wiki/Python_(programming_language)"
    sent = server.requests[0].query
    assert list(sent)[:2] == ["format", "redirects"]
    assert sent["srsearch"] == "Python programming" and sent["srnamespace"] == "0"
    assert source.last_report is not None and source.last_report.total == 6045


def test_fetch_keeps_sections_and_drops_reference_lists(
    server: ReplayServer, tmp_path: Path
) -> None:
    server.add(API, wiki("wikiapi_extracts_wiki.json"), match=extract_of(PYTHON))
    source, _ = make_source(server, tmp_path)

    document = source.fetch(Reference(source="wikipedia", native_id=PYTHON))

    assert document.title == PYTHON and document.licence == "CC BY-SA 4.0"
    assert document.text.startswith("Python is a high-level, general-purpose programming")
    assert "\n## History\n" in document.text
    assert "\n### Indentation\n" in document.text
    assert "## References" not in document.text and "## External links" not in document.text
    assert "History" in document.metadata["sections"]
    assert document.metadata["pageid"] == 23862
    sent = server.requests[0].query
    assert sent["explaintext"] == "1" and sent["exsectionformat"] == "wiki"


def test_missing_page_raises_with_reason(server: ReplayServer, tmp_path: Path) -> None:
    title = "NonExistentPage WikiAPI Test 12345"
    server.add(API, wiki("wikiapi_info_missing_page.json"), match=extract_of(title))
    source, _ = make_source(server, tmp_path)

    with pytest.raises(SourceError, match="no Wikipedia page titled") as raised:
        source.fetch(Reference(source="wikipedia", native_id=title))
    assert raised.value.what == f"wikipedia:{title}"


def test_disambiguation_page_raises_with_reason(server: ReplayServer, tmp_path: Path) -> None:
    title = "Dodge Ram (disambiguation)"
    body = goldsmith_call({"titles": title, "prop": "info|pageprops"})
    server.add(API, Reply(200, body, JSON), match=extract_of(title))
    source, _ = make_source(server, tmp_path)

    with pytest.raises(SourceError, match="disambiguation page"):
        source.fetch(Reference(source="wikipedia", native_id=title))


def test_zero_results_reports_suggestion(server: ReplayServer, tmp_path: Path) -> None:
    server.add(
        API,
        Reply(
            200, goldsmith_response("wikipedia/goldsmith_search_suggestion_hallelulejah.json"), JSON
        ),
        match=is_search,
    )
    source, _ = make_source(server, tmp_path)

    assert source.search("hallelulejah", limit=10) == []
    assert source.last_report is not None
    assert "suggests 'hallelujah'" in source.last_report.reason


def test_zero_results_without_suggestion(server: ReplayServer, tmp_path: Path) -> None:
    server.add(
        API,
        Reply(
            200, goldsmith_response("wikipedia/goldsmith_search_zero_results_qmxjsudek.json"), JSON
        ),
        match=is_search,
    )
    source, _ = make_source(server, tmp_path)

    assert source.search("qmxjsudek", limit=10) == []
    assert source.last_report is not None and "no articles" in source.last_report.reason


def test_api_error_body_with_http_200_raises(server: ReplayServer, tmp_path: Path) -> None:
    server.add(API, wiki("wikiapi_search_title_error_search-title-disabled.json"))
    source, _ = make_source(server, tmp_path)

    with pytest.raises(SourceError, match="search-title-disabled"):
        source.search("Python programming", limit=10)


def test_non_json_answer_raises(server: ReplayServer, tmp_path: Path) -> None:
    body = fixture_bytes("wikipedia/wikiapi_search_default.json")
    server.add(API, Reply(200, body[:500], JSON))
    source, _ = make_source(server, tmp_path)

    with pytest.raises(SourceError, match="not JSON"):
        source.search("Python programming", limit=10)


def test_related_follows_links_with_continuation(server: ReplayServer, tmp_path: Path) -> None:
    links_query = {"prop": "links", "titles": PYTHON}
    server.add(
        API,
        wiki("wikiapi_links_1.json"),
        match=lambda q: q.get("prop") == "links" and "plcontinue" in q,
    )
    server.add(API, wiki("wikiapi_links_0.json"), match=links_query)
    server.add(API, wiki("wikiapi_extracts_wiki.json"), match=extract_of(PYTHON))
    source, _ = make_source(server, tmp_path)

    related = source.related(Reference(source="wikipedia", native_id=PYTHON), limit=5)

    assert len(related) == 5
    link_calls = [r for r in server.requests if r.query.get("prop") == "links"]
    assert len(link_calls) == 2
    assert link_calls[1].query["plcontinue"] == "23862|0|Pyrex_(programming_language)"
    mentions = [r.metadata["mentions"] for r in related]
    assert mentions == sorted(mentions, reverse=True) and mentions[0] > 0
    assert all(r.metadata["related_to"] == PYTHON for r in related)


def test_language_sets_endpoint_and_urls() -> None:
    settings = WikipediaSettings(language="de")
    assert settings.endpoint == "https://de.wikipedia.org/w/api.php"
    source = WikipediaSource(HttpClient(HttpSettings()), settings)
    assert source.http.pacer.interval("de.wikipedia.org") == settings.min_interval_s


def test_503_then_success(server: ReplayServer, tmp_path: Path) -> None:
    server.add(API, [Reply(503, b"upstream busy"), wiki("wikiapi_search_default.json")])
    source, _ = make_source(server, tmp_path)

    assert len(source.search("Python programming", limit=2)) == 2
    assert server.count() == 2


def test_second_identical_job_makes_no_requests(server: ReplayServer, tmp_path: Path) -> None:
    server.add(API, wiki("wikiapi_search_default.json"), match=is_search)
    server.add(API, wiki("wikiapi_extracts_wiki.json"), match=extract_of(PYTHON))
    first_job, http = make_source(server, tmp_path)
    first_job.fetch(first_job.search("Python programming", limit=1)[0])
    http.close()

    second_job, http2 = make_source(server, tmp_path)
    second_job.fetch(second_job.search("Python programming", limit=1)[0])

    assert server.count() == 2
    assert http2.stats.network_requests == 0 and http2.stats.cache_hits == 2


def test_split_sections_reads_levels() -> None:
    sections = split_sections("Lead text.\n\n== A ==\nText A.\n=== A.1 ===\nText A1.\n== B ==\n")
    assert [(s.level, s.title, s.text) for s in sections] == [
        (1, "", "Lead text."),
        (2, "A", "Text A."),
        (3, "A.1", "Text A1."),
        (2, "B", ""),
    ]
