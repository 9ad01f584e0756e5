"""WebSource against a local server: main content, robots.txt, encodings, failures, cache."""

from __future__ import annotations

from pathlib import Path

import pytest
from replay_server import ReplayServer, Reply, fast_http, tiny_pdf

from tools.sources.documents import Document, Reference, SourceError
from tools.sources.http import HttpClient, HttpSettings
from tools.sources.web_source import WebSettings, WebSource, decode_page

ROBOTS_OK = b"User-agent: *\nDisallow: /private/\n"
ARTICLE = """<!DOCTYPE html>
<html><head>{meta}<title>Surface codes explained</title>
<meta name="author" content="Ada Example"></head>
<body><nav><a href="/">Home</a> | <a href="/shop">Shop</a> | Menu item text</nav>
<article><h1>Surface codes explained</h1>
<p>Surface codes protect logical qubits with a lattice of physical qubits. {word} measures
stabilisers every round, and errors show up as pairs of syndrome defects on the lattice.</p>
<h2>Decoding</h2>
<p>Minimum-weight perfect matching pairs the defects and the decoder applies a correction.
The threshold of the surface code under circuit noise is close to one percent.</p></article>
<footer>Cookie policy. Subscribe to our newsletter. All rights reserved.</footer>
</body></html>"""


def page(word: str = "The café", meta: str = "") -> str:
    return ARTICLE.format(word=word, meta=meta)


def make_source(server: ReplayServer, tmp_path: Path, **overrides: object) -> WebSource:
    http = fast_http(tmp_path, server, max_retries=1)
    return WebSource(http, WebSettings(**overrides))  # type: ignore[arg-type]


def fetch(source: WebSource, url: str) -> Document:
    return source.fetch(Reference(source="web", native_id=url))


def test_main_content_without_boilerplate(server: ReplayServer, tmp_path: Path) -> None:
    server.add("/robots.txt", Reply(200, ROBOTS_OK, {"Content-Type": "text/plain"}))
    server.add("/qec", Reply(200, page().encode(), {"Content-Type": "text/html; charset=utf-8"}))
    source = make_source(server, tmp_path)

    document = source.fetch(Reference(source="web", native_id=f"{server.url}/qec"))

    assert document.title == "Surface codes explained"
    assert "The café measures stabilisers" in document.text
    assert "## Decoding" in document.text
    assert "Cookie policy" not in document.text and "Shop" not in document.text
    assert document.authors == ("Ada Example",)
    assert document.source == "web" and document.uri == f"{server.url}/qec"


def test_robots_disallow_blocks_without_requesting_page(
    server: ReplayServer, tmp_path: Path
) -> None:
    server.add("/robots.txt", Reply(200, ROBOTS_OK))
    server.add("/private/notes", Reply(200, page().encode()))
    source = make_source(server, tmp_path)

    with pytest.raises(SourceError, match="robots.txt disallows"):
        source.fetch(Reference(source="web", native_id=f"{server.url}/private/notes"))
    assert server.count("/private/notes") == 0


def test_robots_is_fetched_once_per_site(server: ReplayServer, tmp_path: Path) -> None:
    server.add("/robots.txt", Reply(200, ROBOTS_OK))
    server.add("/a", Reply(200, page().encode(), {"Content-Type": "text/html"}))
    server.add("/b", Reply(200, page("A lab").encode(), {"Content-Type": "text/html"}))
    source = make_source(server, tmp_path)

    fetch(source, f"{server.url}/a")
    fetch(source, f"{server.url}/b")

    assert server.count("/robots.txt") == 1


def test_missing_robots_allows_everything(server: ReplayServer, tmp_path: Path) -> None:
    server.add("/robots.txt", Reply(404, b"not found"))
    server.add("/private/x", Reply(200, page().encode(), {"Content-Type": "text/html"}))
    source = make_source(server, tmp_path)

    assert (
        "syndrome defects"
        in source.fetch(Reference(source="web", native_id=f"{server.url}/private/x")).text
    )


def test_robots_server_error_disallows_everything(server: ReplayServer, tmp_path: Path) -> None:
    server.add("/robots.txt", Reply(503, b"down"))
    server.add("/a", Reply(200, page().encode()))
    source = make_source(server, tmp_path)

    with pytest.raises(SourceError, match="robots.txt disallows"):
        fetch(source, f"{server.url}/a")
    assert server.count("/a") == 0


def test_robots_can_be_ignored_when_configured(server: ReplayServer, tmp_path: Path) -> None:
    server.add("/robots.txt", Reply(200, b"User-agent: *\nDisallow: /\n"))
    server.add("/a", Reply(200, page().encode(), {"Content-Type": "text/html"}))
    source = make_source(server, tmp_path, respect_robots=False)

    assert "syndrome" in source.fetch(Reference(source="web", native_id=f"{server.url}/a")).text
    assert server.count("/robots.txt") == 0


def test_crawl_delay_paces_the_host(server: ReplayServer, tmp_path: Path) -> None:
    server.add("/robots.txt", Reply(200, b"User-agent: *\nCrawl-delay: 2\n"))
    http = HttpClient(HttpSettings(cache_dir=None))
    source = WebSource(http)

    assert source.robots.allows(f"{server.url}/a")
    assert http.pacer.interval(server.netloc) == 2.0


def test_latin1_declared_in_http_header(server: ReplayServer, tmp_path: Path) -> None:
    server.add("/robots.txt", Reply(404))
    body = page("Le café crème").encode("iso-8859-1")
    server.add("/fr", Reply(200, body, {"Content-Type": "text/html; charset=ISO-8859-1"}))
    source = make_source(server, tmp_path)

    assert (
        "Le café crème measures"
        in source.fetch(Reference(source="web", native_id=f"{server.url}/fr")).text
    )


def test_charset_declared_only_in_meta(server: ReplayServer, tmp_path: Path) -> None:
    server.add("/robots.txt", Reply(404))
    body = page("量子誤り訂正の装置", meta='<meta charset="Shift_JIS">').encode("shift_jis")
    server.add("/ja", Reply(200, body, {"Content-Type": "text/html"}))
    source = make_source(server, tmp_path)

    assert (
        "量子誤り訂正の装置 measures"
        in source.fetch(Reference(source="web", native_id=f"{server.url}/ja")).text
    )


def test_undeclared_encodings_are_decoded() -> None:
    french = "Le café sert une crème brûlée; naïve « guillemets » et œuvre — fin. " * 3
    russian = "Квантовая коррекция ошибок защищает логические кубиты от шума. " * 3
    assert decode_page(french.encode("cp1252"), "text/html") == french
    assert decode_page(russian.encode("cp1251"), None) == russian
    assert decode_page("naïve".encode(), None) == "naïve"
    assert decode_page(b"\xef\xbb\xbfBOM text", "text/html; charset=latin-1") == "BOM text"


def test_too_little_text_is_an_error(server: ReplayServer, tmp_path: Path) -> None:
    server.add("/robots.txt", Reply(404))
    server.add(
        "/empty", Reply(200, b"<html><body><p>Hi.</p></body></html>", {"Content-Type": "text/html"})
    )
    source = make_source(server, tmp_path)

    with pytest.raises(SourceError, match="characters of main text"):
        fetch(source, f"{server.url}/empty")


def test_pdf_url_is_extracted(server: ReplayServer, tmp_path: Path) -> None:
    server.add("/robots.txt", Reply(404))
    pdf = tiny_pdf(
        [
            "Lattice surgery merges and splits surface code patches to move logical "
            "information between qubits. " * 3
        ]
    )
    server.add("/paper.pdf", Reply(200, pdf, {"Content-Type": "application/pdf"}))
    source = make_source(server, tmp_path)

    document = source.fetch(Reference(source="web", native_id=f"{server.url}/paper.pdf"))

    assert "Lattice surgery merges" in document.text


def test_http_error_page_is_a_source_error(server: ReplayServer, tmp_path: Path) -> None:
    server.add("/robots.txt", Reply(404))
    server.add("/gone", Reply(410, b"gone"))
    source = make_source(server, tmp_path)

    with pytest.raises(SourceError, match="HTTP 410"):
        fetch(source, f"{server.url}/gone")


def test_search_lists_configured_urls(tmp_path: Path) -> None:
    source = WebSource(
        HttpClient(HttpSettings()),
        WebSettings(urls=("https://a.example/x", "https://b.example/y", "https://a.example/x")),
    )
    assert [r.native_id for r in source.search("ignored", limit=5)] == [
        "https://a.example/x",
        "https://b.example/y",
    ]
    empty = WebSource(HttpClient(HttpSettings()))
    assert empty.search("q", 3) == []
    assert empty.last_report is not None and "no URLs" in empty.last_report.reason


def test_non_http_url_is_refused(tmp_path: Path) -> None:
    source = WebSource(HttpClient(HttpSettings()))
    with pytest.raises(SourceError, match="only http"):
        fetch(source, "file:///etc/passwd")


def test_second_identical_job_makes_no_requests(server: ReplayServer, tmp_path: Path) -> None:
    server.add("/robots.txt", Reply(200, ROBOTS_OK))
    server.add("/qec", Reply(200, page().encode(), {"Content-Type": "text/html"}))
    first = make_source(server, tmp_path)
    text = fetch(first, f"{server.url}/qec").text
    first.http.close()

    second = make_source(server, tmp_path)

    assert fetch(second, f"{server.url}/qec").text == text
    assert server.count() == 2
    assert second.http.stats.network_requests == 0
