"""The HTTP layer against a real local server: cache, retries, Retry-After, pacing, failures."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
from replay_server import ReplayServer, Reply, unused_port

from tools.sources.documents import SourceError
from tools.sources.http import (
    HttpClient,
    HttpSettings,
    HttpStatusError,
    NetworkUnavailable,
    parse_retry_after,
    user_agent,
)


def fast_settings(tmp_path: Path, **overrides: object) -> HttpSettings:
    """Settings with tiny waits so retry tests take milliseconds."""
    values: dict[str, object] = {
        "cache_dir": tmp_path / "http-cache",
        "timeout_s": 2.0,
        "max_retries": 2,
        "backoff_base_s": 0.01,
        "max_backoff_s": 0.5,
        "user_agent_contact": "mailto:test@example.org",
    }
    values.update(overrides)
    return HttpSettings(**values)  # type: ignore[arg-type]


def test_second_identical_job_makes_zero_requests(server: ReplayServer, tmp_path: Path) -> None:
    server.add("/data", Reply(200, b"payload", {"Content-Type": "text/plain"}))
    settings = fast_settings(tmp_path)
    with HttpClient(settings) as first_job:
        assert first_job.get(f"{server.url}/data", params={"q": "x"}).content == b"payload"
        assert first_job.stats.cache_misses == 1
    with HttpClient(settings) as second_job:  # a new process would open the same cache file
        assert second_job.get(f"{server.url}/data", params={"q": "x"}).content == b"payload"
        assert second_job.stats.cache_hits == 1
        assert second_job.stats.network_requests == 0
    assert server.count("/data") == 1


def test_different_query_is_a_cache_miss(server: ReplayServer, tmp_path: Path) -> None:
    server.add("/data", Reply(200, b"payload"))
    with HttpClient(fast_settings(tmp_path)) as http:
        http.get(f"{server.url}/data", params={"q": "a"})
        http.get(f"{server.url}/data", params={"q": "b"})
        assert (http.stats.cache_hits, http.stats.cache_misses) == (0, 2)
    assert server.count("/data") == 2


def test_error_responses_are_not_cached(server: ReplayServer, tmp_path: Path) -> None:
    server.add("/flaky", [Reply(404, b"gone"), Reply(200, b"back")])
    with HttpClient(fast_settings(tmp_path)) as http:
        with pytest.raises(HttpStatusError) as raised:
            http.get(f"{server.url}/flaky")
        assert raised.value.status_code == 404
        assert http.get(f"{server.url}/flaky").content == b"back"


def test_5xx_then_success_is_retried(server: ReplayServer, tmp_path: Path) -> None:
    server.add("/feed", [Reply(503, b"busy"), Reply(502, b"bad gateway"), Reply(200, b"ok")])
    with HttpClient(fast_settings(tmp_path)) as http:
        assert http.get(f"{server.url}/feed").content == b"ok"
    assert server.count("/feed") == 3


def test_429_honours_retry_after(server: ReplayServer, tmp_path: Path) -> None:
    server.add(
        "/limited",
        [
            Reply(429, b'{"error":"API rate limit exceeded","count":"11"}', {"Retry-After": "1"}),
            Reply(200, b"ok"),
        ],
    )
    with HttpClient(fast_settings(tmp_path, max_backoff_s=5.0)) as http:
        assert http.get(f"{server.url}/limited").content == b"ok"
    first, second = server.requests
    assert second.at - first.at >= 0.95  # waited what the server asked, not the 10 ms backoff


def test_retry_after_is_capped_by_settings(server: ReplayServer, tmp_path: Path) -> None:
    server.add("/limited", [Reply(429, b"slow down", {"Retry-After": "3600"}), Reply(200, b"ok")])
    started = time.monotonic()
    with HttpClient(fast_settings(tmp_path, max_backoff_s=0.2)) as http:
        assert http.get(f"{server.url}/limited").content == b"ok"
    assert time.monotonic() - started < 2.0


def test_persistent_5xx_becomes_http_status_error(server: ReplayServer, tmp_path: Path) -> None:
    server.add("/down", Reply(500, b"internal error"))
    with (
        HttpClient(fast_settings(tmp_path, max_retries=2)) as http,
        pytest.raises(HttpStatusError) as raised,
    ):
        http.get(f"{server.url}/down")
    assert raised.value.status_code == 500
    assert "after 3 attempts" in raised.value.reason
    assert server.count("/down") == 3


def test_read_timeout_is_retried_then_reported(server: ReplayServer, tmp_path: Path) -> None:
    server.add("/slow", Reply(200, b"late", delay_s=1.0))
    settings = fast_settings(tmp_path, timeout_s=0.2, max_retries=1)
    with HttpClient(settings) as http, pytest.raises(SourceError, match="timed out"):
        http.get(f"{server.url}/slow")
    assert server.count("/slow") == 2


def test_timeout_then_success(server: ReplayServer, tmp_path: Path) -> None:
    server.add("/slow", [Reply(200, b"late", delay_s=1.0), Reply(200, b"fast")])
    with HttpClient(fast_settings(tmp_path, timeout_s=0.3)) as http:
        assert http.get(f"{server.url}/slow").content == b"fast"


def test_no_network_fails_fast_with_typed_error(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{unused_port()}/anything"
    started = time.monotonic()
    with HttpClient(fast_settings(tmp_path)) as http, pytest.raises(NetworkUnavailable) as raised:
        http.get(url)
    assert time.monotonic() - started < 3.0
    assert isinstance(raised.value, SourceError)
    assert "cannot reach" in raised.value.reason


def test_cache_serves_when_offline(server: ReplayServer, tmp_path: Path) -> None:
    server.add("/doc", Reply(200, b"kept"))
    settings = fast_settings(tmp_path)
    url = f"{server.url}/doc"
    with HttpClient(settings) as http:
        http.get(url)
    server.stop()  # the network goes away
    with HttpClient(settings) as http:
        assert http.get(url).content == b"kept"


def test_per_host_min_interval_spaces_requests(server: ReplayServer, tmp_path: Path) -> None:
    server.add("/paced", Reply(200, b"ok"))
    settings = fast_settings(tmp_path, cache_dir=None, per_host_min_interval={server.netloc: 0.15})
    with HttpClient(settings) as http:
        # timed where the pacing happens: a loaded server thread can note an arrival late and so compress
        # the gaps it sees; three paced requests cannot take less than two intervals
        started = time.monotonic()
        for n in range(3):
            http.get(f"{server.url}/paced", params={"n": n})
        elapsed = time.monotonic() - started
    assert len(server.requests) == 3 and elapsed >= 2 * 0.15 - 0.005


def test_cache_hits_are_not_paced(server: ReplayServer, tmp_path: Path) -> None:
    server.add("/paced", Reply(200, b"ok"))
    settings = fast_settings(tmp_path, per_host_min_interval={server.netloc: 1.0})
    with HttpClient(settings) as http:
        http.get(f"{server.url}/paced")
        started = time.monotonic()
        for _ in range(5):
            http.get(f"{server.url}/paced")
        assert time.monotonic() - started < 0.5


def test_user_agent_names_project_version_and_contact(server: ReplayServer, tmp_path: Path) -> None:
    server.add("/ua", Reply(200, b"ok"))
    with HttpClient(fast_settings(tmp_path)) as http:
        http.get(f"{server.url}/ua")
    sent = server.requests[0].headers["User-Agent"]
    assert sent == user_agent("mailto:test@example.org")
    assert sent.startswith("ftagent/") and sent.endswith("(+mailto:test@example.org)")


def test_parse_retry_after_accepts_seconds_and_http_dates() -> None:
    now = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)
    assert parse_retry_after("7") == 7.0
    assert parse_retry_after("Thu, 01 Jan 2026 12:00:30 GMT", now=now) == 30.0
    assert parse_retry_after("Thu, 01 Jan 2026 11:00:00 GMT", now=now) == 0.0
    assert parse_retry_after("soon") is None
    assert parse_retry_after(None) is None
