"""ArxivSource against a local server replaying recorded arXiv API feeds."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from replay_server import ReplayServer, Reply, fast_http, fixture_bytes, tiny_pdf

from tools.sources.arxiv_source import ArxivSettings, ArxivSource, to_search_query
from tools.sources.documents import Reference, SourceError
from tools.sources.http import HttpClient

API = "/api/query"
ATOM = {"Content-Type": "application/atom+xml; charset=UTF-8"}


def feed(name: str, status: int = 200) -> Reply:
    return Reply(status, fixture_bytes(f"arxiv/{name}"), ATOM)


def make_source(
    server: ReplayServer, tmp_path: Path, **overrides: object
) -> tuple[ArxivSource, HttpClient]:
    http = fast_http(tmp_path, server, pace=None)
    values: dict[str, object] = {
        "api_url": f"{server.url}{API}",
        "pdf_url_template": f"{server.url}/pdf/{{id}}",
        "delay_s": 0.0,
        "page_size": 10,
    }
    values.update(overrides)
    return ArxivSource(http, ArxivSettings(**values)), http  # type: ignore[arg-type]


def route_ids(server: ReplayServer, ids: str, name: str, status: int = 200) -> None:
    server.add(API, feed(name, status), match={"id_list": ids})


def test_search_pages_through_results_with_arxiv_py_parameters(
    server: ReplayServer, tmp_path: Path
) -> None:
    server.add(API, feed("arxivpy_search_testing_start0_max10.xml"), match={"start": "0"})
    server.add(API, feed("arxivpy_search_testing_start10_max10.xml"), match={"start": "10"})
    source, _ = make_source(server, tmp_path)

    references = source.search("testing", limit=15)

    assert len(references) == 15
    assert references[0].native_id == "2202.12139v1"
    assert references[0].title.startswith("Testing Deep Learning Models")
    assert references[10].native_id == "2403.16981v2"
    first, second = server.requests
    assert list(first.query) == [
        "search_query",
        "id_list",
        "sortBy",
        "sortOrder",
        "start",
        "max_results",
    ]
    assert first.query == {
        "search_query": "testing",
        "id_list": "",
        "sortBy": "relevance",
        "sortOrder": "descending",
        "start": "0",
        "max_results": "10",
    }
    assert (second.query["start"], second.query["max_results"]) == ("10", "5")
    assert source.last_report is not None and source.last_report.total == 214881


def test_fetch_after_search_needs_no_request(server: ReplayServer, tmp_path: Path) -> None:
    server.add(API, feed("arxivpy_search_testing_start0_max10.xml"))
    source, _ = make_source(server, tmp_path)
    reference = source.search("testing", limit=1)[0]
    before = server.count()

    document = source.fetch(reference)

    assert server.count() == before
    assert document.source == "arxiv" and document.native_id == "2202.12139v1"
    assert document.text.startswith(reference.title)
    assert reference.metadata["abstract"] in document.text
    assert document.licence and document.licence.startswith("CC0")


def test_fetch_bare_reference_looks_up_id(server: ReplayServer, tmp_path: Path) -> None:
    route_ids(server, "1605.08386", "arxivpy_id_1605.08386_single.xml")
    source, _ = make_source(server, tmp_path)

    document = source.fetch(Reference(source="arxiv", native_id="1605.08386"))

    assert document.title == "Heat-bath random walks with Markov bases"
    assert document.authors == ("Caprice Stanley", "Tobias Windisch")
    assert document.published == "2016-05-26"
    assert document.metadata["categories"] == ["math.CO", "math.ST"]
    assert document.metadata["primary_category"] == "math.CO"
    assert document.metadata["comment"] == "20 pages, 3 figures"
    assert document.metadata["pdf_url"] == "https://arxiv.org/pdf/1605.08386v1"
    assert "heat-bath random walk" in document.text
    assert document.uri == "https://arxiv.org/abs/1605.08386v1"


def test_old_style_and_literal_zero_titles(server: ReplayServer, tmp_path: Path) -> None:
    route_ids(server, "astro-ph/0601001", "arxivpy_id_astro-ph_0601001_oldstyle.xml")
    route_ids(server, "2104.12255v1", "arxivpy_id_2104.12255v1_title_0.xml")
    source, _ = make_source(server, tmp_path)

    old = source.lookup(["astro-ph/0601001"])
    zero = source.lookup(["2104.12255v1"])

    assert old[0].native_id == "astro-ph/0601001v1"
    assert zero[0].title == "0"  # a title of "0" is a title, not a missing one
    assert source.fetch(zero[0]).text.startswith("0\n\n")


def test_lookup_with_one_unknown_id_returns_the_known_one(
    server: ReplayServer, tmp_path: Path
) -> None:
    route_ids(server, "0808.05394,1707.08567", "arxivpy_id_0808.05394_1707.08567.xml")
    source, _ = make_source(server, tmp_path)

    found = source.lookup(["0808.05394", "1707.08567"])

    assert [ref.native_id for ref in found] == ["1707.08567v1"]


def test_http_400_error_feed_raises_with_arxivs_message(
    server: ReplayServer, tmp_path: Path
) -> None:
    route_ids(server, "abc", "arxivpy_id_abc_error_400.xml", status=400)
    source, _ = make_source(server, tmp_path)

    with pytest.raises(SourceError) as raised:
        source.fetch(Reference(source="arxiv", native_id="abc"))

    assert "incorrect id format for abc" in raised.value.reason
    assert "HTTP 400" in raised.value.reason
    assert server.count() == 1  # a 400 is not retried


def test_legacy_error_feed_with_200_raises(server: ReplayServer, tmp_path: Path) -> None:
    route_ids(server, "1234.12345", "arxivdocs_manual_error_id_list_1234.12345_legacy.xml")
    source, _ = make_source(server, tmp_path)

    with pytest.raises(SourceError, match="incorrect id format for 1234.12345"):
        source.lookup(["1234.12345"])


def test_zero_results_is_empty_with_reason(server: ReplayServer, tmp_path: Path) -> None:
    server.add(API, feed("arxivpy_id_0000.0000_zero_results.xml"))
    source, _ = make_source(server, tmp_path)

    assert source.search("qmxjsudek", limit=5) == []
    assert source.last_report is not None
    assert source.last_report.total == 0
    assert "no papers" in source.last_report.reason


def test_unknown_id_fetch_raises(server: ReplayServer, tmp_path: Path) -> None:
    server.add(API, feed("arxivpy_id_0000.0000_zero_results.xml"))
    source, _ = make_source(server, tmp_path)

    with pytest.raises(SourceError, match="no paper with this id"):
        source.fetch(Reference(source="arxiv", native_id="0000.0000"))


def test_truncated_feed_raises_malformed(server: ReplayServer, tmp_path: Path) -> None:
    body = fixture_bytes("arxiv/arxivpy_search_testing_start0_max10.xml")
    server.add(API, Reply(200, body[: len(body) // 2], ATOM))
    source, _ = make_source(server, tmp_path)

    with pytest.raises(SourceError, match="malformed XML"):
        source.search("testing", limit=3)


def test_html_instead_of_feed_raises(server: ReplayServer, tmp_path: Path) -> None:
    server.add(API, Reply(200, b"<html><body><h1>Service busy</h1></body></html>"))
    source, _ = make_source(server, tmp_path)

    with pytest.raises(SourceError, match="not an Atom feed|malformed"):
        source.search("testing", limit=3)


def test_503_then_feed_succeeds(server: ReplayServer, tmp_path: Path) -> None:
    server.add(
        API,
        [
            Reply(503, b"Service Unavailable", {"Retry-After": "0"}),
            feed("arxivpy_id_1605.08386_single.xml"),
        ],
    )
    source, _ = make_source(server, tmp_path)

    assert [ref.native_id for ref in source.lookup(["1605.08386"])] == ["1605.08386v1"]
    assert server.count() == 2


def test_requests_are_spaced_by_delay(server: ReplayServer, tmp_path: Path) -> None:
    server.add(API, feed("arxivpy_search_testing_start0_max10.xml"), match={"start": "0"})
    server.add(API, feed("arxivpy_search_testing_start10_max10.xml"), match={"start": "10"})
    source, _ = make_source(server, tmp_path, delay_s=0.25)

    # timed where the pacing happens: a loaded server thread can note an arrival late and so compress the
    # gap it sees (0.17 s seen once in a full run); two paced requests cannot take less than one delay
    started = time.monotonic()
    source.search("testing", limit=20)
    elapsed = time.monotonic() - started

    assert len(server.requests) == 2 and elapsed >= 0.25 - 0.005


def test_second_identical_job_makes_no_requests(server: ReplayServer, tmp_path: Path) -> None:
    server.add(API, feed("arxivpy_search_testing_start0_max10.xml"))
    first_job, http = make_source(server, tmp_path)
    first = [first_job.fetch(ref) for ref in first_job.search("testing", limit=10)]
    http.close()
    calls = server.count()

    second_job, http2 = make_source(server, tmp_path)
    second = [second_job.fetch(ref) for ref in second_job.search("testing", limit=10)]

    assert server.count() == calls
    assert [d.doc_id for d in second] == [d.doc_id for d in first]
    assert http2.stats.cache_hits == 1 and http2.stats.network_requests == 0


def test_full_text_appends_pdf_text(server: ReplayServer, tmp_path: Path) -> None:
    route_ids(server, "1605.08386", "arxivpy_id_1605.08386_single.xml")
    pdf = tiny_pdf(["Markov bases give moves on fibers.", "Mixing times of heat-bath walks."])
    server.add("/pdf/1605.08386v1", Reply(200, pdf, {"Content-Type": "application/pdf"}))
    source, _ = make_source(server, tmp_path, full_text=True)

    document = source.fetch(source.lookup(["1605.08386"])[0])

    assert "Markov bases give moves on fibers." in document.text
    assert "Mixing times of heat-bath walks." in document.text
    assert document.metadata["full_text"] is True and document.metadata["pdf_pages"] == 2
    assert document.licence and "full text" in document.licence


def test_corrupt_pdf_keeps_abstract_and_records_why(server: ReplayServer, tmp_path: Path) -> None:
    route_ids(server, "1605.08386", "arxivpy_id_1605.08386_single.xml")
    server.add("/pdf/1605.08386v1", Reply(200, b"%PDF-1.4\nthis is not really a pdf"))
    source, _ = make_source(server, tmp_path, full_text=True)

    document = source.fetch(source.lookup(["1605.08386"])[0])

    assert document.metadata["full_text"] is False
    assert "PDF" in document.metadata["full_text_error"]
    assert "heat-bath random walk" in document.text


def test_free_text_queries_become_field_queries() -> None:
    assert to_search_query("testing") == "testing"
    assert to_search_query("quantum error correction") == (
        "all:quantum AND all:error AND all:correction"
    )
    assert to_search_query("ti:surface AND cat:quant-ph") == "ti:surface AND cat:quant-ph"
