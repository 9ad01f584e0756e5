"""PubMedSource against a local server replaying recorded E-utilities answers."""

from __future__ import annotations

from pathlib import Path

import pytest
from replay_server import ReplayServer, Reply, fast_http, fixture_bytes

from tools.sources.documents import Reference, SourceError
from tools.sources.http import HttpClient, HttpSettings
from tools.sources.pubmed_source import (
    INTERVAL_WITH_KEY_S,
    INTERVAL_WITHOUT_KEY_S,
    PubMedSettings,
    PubMedSource,
)

ESEARCH = "/entrez/eutils/esearch.fcgi"
EFETCH = "/entrez/eutils/efetch.fcgi"
XML = {"Content-Type": "text/xml; charset=UTF-8"}
HART_WEBENV = "MCID_6934533c4c5abba8c303da1d"
CANCER_WEBENV = "MCID_6927d6e7fee3e90f880ec190"


def ncbi(name: str, status: int = 200) -> Reply:
    return Reply(status, fixture_bytes(f"ncbi/{name}"), XML)


def make_source(
    server: ReplayServer, tmp_path: Path, pace: float = 0.0, **overrides: object
) -> tuple[PubMedSource, HttpClient]:
    http = fast_http(tmp_path, server, pace=pace, max_backoff_s=1.0)
    values: dict[str, object] = {
        "base_url": f"{server.url}/entrez/eutils/",
        "email": "dev@example.org",
    }
    values.update(overrides)
    return PubMedSource(http, PubMedSettings(**values)), http  # type: ignore[arg-type]


def route_hart_search(server: ReplayServer, efetch: str = "biopython_pubmed2.xml") -> None:
    server.add(
        ESEARCH,
        ncbi("biocommons_esearch_pubmed_hart_rk_author.xml"),
        match={"term": "hart rk[author]"},
    )
    server.add(EFETCH, ncbi(efetch), match={"WebEnv": HART_WEBENV, "query_key": "1"})


def test_search_uses_history_and_returns_records(server: ReplayServer, tmp_path: Path) -> None:
    route_hart_search(server)
    source, _ = make_source(server, tmp_path, api_key="KEY123")

    references = source.search("hart rk[author]", limit=5)

    assert [r.native_id for r in references] == ["11748933", "11700088"]
    assert references[0].title.startswith("Is cryopreservation a homogeneous process?")
    esearch, efetch = server.requests
    assert esearch.query["usehistory"] == "y" and esearch.query["retmax"] == "5"
    assert esearch.query["tool"] == "ftagent" and esearch.query["email"] == "dev@example.org"
    assert esearch.query["api_key"] == "KEY123"
    assert efetch.query["WebEnv"] == HART_WEBENV and efetch.query["retmode"] == "xml"
    report = source.last_report
    assert report is not None and report.total == 34
    assert report.details["translations"] == [
        ["hart rk[author]", "Hart, Rk[Full Author Name] OR hart rk[Author]"]
    ]


def test_fetch_after_search_keeps_structured_labels(server: ReplayServer, tmp_path: Path) -> None:
    route_hart_search(server, efetch="biopython_pubmed4.xml")
    source, _ = make_source(server, tmp_path)
    reference = source.search("hart rk[author]", limit=5)[0]
    before = server.count()

    document = source.fetch(reference)

    assert server.count() == before
    assert document.native_id == "27797938"
    paragraphs = document.text.split("\n\n")
    assert paragraphs[0].startswith("Leucocyte telomere length, genetic variants at the TERT")
    assert [p.split(":")[0] for p in paragraphs[1:]] == [
        "OBJECTIVE",
        "DESIGN",
        "RESULTS",
        "CONCLUSIONS",
    ]
    assert "<i>" not in document.text and "<sub>" not in document.text
    assert document.metadata["journal"] == "Gut"
    assert document.metadata["doi"] == "10.1136/gutjnl-2016-312510"
    assert document.metadata["year"] == "2017"
    assert "Adenocarcinoma" in document.metadata["mesh_terms"]
    assert document.published == "2016-10-21"
    assert document.authors[:2] == ("Ying Bao", "Jennifer Prescott")


def test_fetch_bare_reference_by_pmid(server: ReplayServer, tmp_path: Path) -> None:
    server.add(EFETCH, ncbi("biocommons_efetch_pubmed_22351513.xml"), match={"id": "22351513"})
    source, _ = make_source(server, tmp_path)

    document = source.fetch(Reference(source="pubmed", native_id="22351513"))

    assert document.title.startswith("Variation in oil content and fatty acid composition")
    labels = [s["label"] for s in document.metadata["abstract_sections"]]
    assert labels == ["BACKGROUND", "RESULTS", "CONCLUSION"]
    assert document.licence == "Copyright © 2012 Society of Chemical Industry."
    assert document.metadata["mesh_terms"][:2] == ["Acacia", "Dietary Fats"]
    assert server.requests[0].query["rettype"] == "abstract"


def test_records_without_abstract_are_skipped_and_reported(
    server: ReplayServer, tmp_path: Path
) -> None:
    server.add(ESEARCH, ncbi("biopython_esearch2.xml"), match={"term": "cancer"})
    server.add(EFETCH, ncbi("biopython_pubmed1.xml"), match={"WebEnv": CANCER_WEBENV})
    source, _ = make_source(server, tmp_path)

    references = source.search("cancer", limit=2)

    assert [r.native_id for r in references] == ["9997"]
    assert source.last_report is not None
    assert source.last_report.skipped == (("12091962", "no abstract"),)


def test_fetch_record_without_abstract_raises(server: ReplayServer, tmp_path: Path) -> None:
    server.add(EFETCH, ncbi("biocommons_efetch_pubmed_1234567.xml"), match={"id": "1234567"})
    source, _ = make_source(server, tmp_path)

    with pytest.raises(SourceError, match="no abstract") as raised:
        source.fetch(Reference(source="pubmed", native_id="1234567"))
    assert raised.value.what == "pubmed:1234567"


def test_zero_results_is_empty_with_ncbis_reason(server: ReplayServer, tmp_path: Path) -> None:
    server.add(ESEARCH, ncbi("biopython_esearch8.xml"))
    source, _ = make_source(server, tmp_path)

    assert source.search("abcXYZ", limit=5) == []
    assert source.last_report is not None
    assert "PhraseNotFound: abcXYZ" in source.last_report.reason
    assert server.count(EFETCH) == 0


def test_html_page_instead_of_xml_is_a_clear_error(server: ReplayServer, tmp_path: Path) -> None:
    server.add(
        EFETCH,
        Reply(200, fixture_bytes("ncbi/biopython_pubmed3.html"), {"Content-Type": "text/html"}),
    )
    source, _ = make_source(server, tmp_path)

    with pytest.raises(SourceError) as raised:
        source.fetch(Reference(source="pubmed", native_id="19304878"))

    assert "HTML page" in raised.value.reason and "PmFetch response" in raised.value.reason


def test_truncated_xml_is_malformed(server: ReplayServer, tmp_path: Path) -> None:
    body = fixture_bytes("ncbi/biopython_pubmed2.xml")
    server.add(EFETCH, Reply(200, body[: len(body) // 2], XML))
    source, _ = make_source(server, tmp_path)

    with pytest.raises(SourceError, match="malformed XML"):
        source.fetch(Reference(source="pubmed", native_id="11748933"))


def test_expired_history_falls_back_to_ids(server: ReplayServer, tmp_path: Path) -> None:
    server.add(ESEARCH, ncbi("biocommons_esearch_pubmed_hart_rk_author.xml"))
    server.add(EFETCH, ncbi("biopython_esummary8.xml"), match={"WebEnv": HART_WEBENV})
    server.add(EFETCH, ncbi("biopython_pubmed2.xml"), match={"id": "40455089,40211185"})
    source, _ = make_source(server, tmp_path)

    references = source.search("hart rk[author]", limit=2)

    assert len(references) == 2
    assert server.count(EFETCH) == 2


def test_translation_set_is_exposed_for_query_expansion(
    server: ReplayServer, tmp_path: Path
) -> None:
    server.add(ESEARCH, ncbi("biopython_esearch3.xml"), match={"term": "PNAS[ta] AND 97[vi]"})
    server.add(ESEARCH, ncbi("biopython_esearch2.xml"), match={"term": "cancer"})
    source, _ = make_source(server, tmp_path)

    pnas = source.translate("PNAS[ta] AND 97[vi]")
    cancer = source.translate("cancer")

    assert pnas.translations == (("PNAS[ta]", '"Proc Natl Acad Sci U S A"[Journal:__jid7505876]'),)
    assert pnas.query_translation == '"proc natl acad sci u s a"[Journal] AND "97"[Volume]'
    assert cancer.mesh_terms() == ["neoplasms"]
    assert all(r.query["retmax"] == "0" for r in server.requests)


def test_429_with_retry_after_then_success(server: ReplayServer, tmp_path: Path) -> None:
    limited = Reply(
        429,
        b'{"error":"API rate limit exceeded","count":"11"}',
        {"Retry-After": "0", "Content-Type": "application/json"},
    )
    server.add(EFETCH, [limited, ncbi("biopython_pubmed2.xml")])
    source, _ = make_source(server, tmp_path)

    document = source.fetch(Reference(source="pubmed", native_id="11748933"))

    assert document.native_id == "11748933"
    assert server.count(EFETCH) == 2


def test_persistent_server_error_is_a_source_error(server: ReplayServer, tmp_path: Path) -> None:
    server.add(EFETCH, Reply(502, b"Bad Gateway"))
    source, _ = make_source(server, tmp_path)

    with pytest.raises(SourceError, match="HTTP 502 after 3 attempts"):
        source.fetch(Reference(source="pubmed", native_id="11748933"))


def test_rate_limit_follows_api_key(server: ReplayServer, tmp_path: Path) -> None:
    http = HttpClient(HttpSettings(cache_dir=None))
    PubMedSource(http, PubMedSettings(base_url="https://ncbi.example/eutils/"))
    assert http.pacer.interval("ncbi.example") == INTERVAL_WITHOUT_KEY_S
    keyed = HttpClient(HttpSettings(cache_dir=None))
    PubMedSource(keyed, PubMedSettings(base_url="https://ncbi.example/eutils/", api_key="k"))
    assert keyed.pacer.interval("ncbi.example") == INTERVAL_WITH_KEY_S


def test_requests_are_spaced_at_three_per_second(server: ReplayServer, tmp_path: Path) -> None:
    route_hart_search(server)
    http = HttpClient(HttpSettings(cache_dir=None))
    source = PubMedSource(http, PubMedSettings(base_url=f"{server.url}/entrez/eutils/"))

    source.search("hart rk[author]", limit=2)

    esearch, efetch = server.requests
    assert efetch.at - esearch.at >= INTERVAL_WITHOUT_KEY_S - 0.01


def test_second_identical_job_makes_no_requests(server: ReplayServer, tmp_path: Path) -> None:
    route_hart_search(server)
    first_job, http = make_source(server, tmp_path)
    first = [first_job.fetch(r) for r in first_job.search("hart rk[author]", limit=5)]
    http.close()
    calls = server.count()

    second_job, http2 = make_source(server, tmp_path)
    second = [second_job.fetch(r) for r in second_job.search("hart rk[author]", limit=5)]

    assert server.count() == calls == 2
    assert [d.text for d in second] == [d.text for d in first]
    assert http2.stats.network_requests == 0
