"""The one HTTP layer every source uses.

What it adds on top of httpx, so no source has to think about it:

- a timeout on every call (connect timeout kept short so "no network" fails in seconds);
- an on-disk cache (hishel 2.x `CacheTransport` + `SqliteStorage`, non-RFC mode: a successful
  GET/HEAD is stored under its method and URL and served again until `cache_ttl_s` expires,
  whatever the server's cache headers say), so a repeated job downloads nothing twice.
  POST is never cached; the sources use GET only;
- cache hit/miss counters and a count of requests that really went to the network;
- retries with exponential backoff (tenacity) on 429, 5xx, read timeouts and dropped
  connections, honouring `Retry-After`, each wait capped by `max_backoff_s`;
- a minimum interval between network requests per host (cache hits are not paced);
- a descriptive User-Agent: ``ftagent/<version> (+<contact>)``.

- a cap on every body (`max_body_bytes`, default 20 MB), read as a stream: a bigger one is cut
  off at the cap (or refused at once by its Content-Length) and never cached;
- on request (`public_only=True`, used for URLs a remote caller named) a check, before every
  request and so at every redirect hop, that the host resolves only to public addresses: loopback,
  private, link-local (cloud metadata at 169.254.169.254), shared, reserved and multicast ones are
  refused. The check runs above the cache, so a page cached by a local job is not served either.
  It resolves the name itself; a name that changes its answer between the check and httpx's own
  lookup (DNS rebinding within milliseconds) is the remaining gap, closed only by a proxy.

Every failure leaves as a `SourceError`: `NetworkUnavailable` when the host cannot be reached
at all, `HttpStatusError` (with the status and the body) for an error status, `BlockedAddress`
for a private address, `BodyTooLarge` for a body over the cap.
"""

from __future__ import annotations

import email.utils
import hashlib
import ipaddress
import socket
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any, Self
from urllib.parse import urlsplit

import httpx
import tenacity

from tools.sources.documents import SourceError

DEFAULT_CONTACT = "https://github.com/ftagent/ftagent"
RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
CACHE_FILE = "http-cache.sqlite"
DEFAULT_MAX_BODY_BYTES = 20 * 1024 * 1024
_PUBLIC_ONLY = "ftagent.public_only"  # request extension; httpx copies extensions onto redirect requests


@dataclass(frozen=True)
class HttpSettings:
    """How the HTTP layer behaves. Defaults suit real use; tests shrink the waits."""

    cache_dir: Path | None = None  # None: no on-disk cache
    timeout_s: float = 30.0
    max_retries: int = 3  # extra attempts after the first
    backoff_base_s: float = 1.0  # wait before retry n is base * 2**(n-1), unless Retry-After says
    user_agent_contact: str = DEFAULT_CONTACT
    per_host_min_interval: dict[str, float] = field(default_factory=dict)  # host[:port] -> seconds
    connect_timeout_s: float = 5.0  # short, so an offline machine fails fast
    max_backoff_s: float = 60.0  # cap on any single wait, Retry-After included
    cache_ttl_s: float | None = 30 * 24 * 3600.0  # None: keep forever
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES  # a longer body fails with BodyTooLarge


class NetworkUnavailable(SourceError):
    """The host could not be reached at all (offline, DNS failure, connection refused)."""


class BlockedAddress(SourceError):
    """A URL whose host is, or resolves to, an address that is not public (loopback, private, ...)."""


class BodyTooLarge(SourceError):
    """A response body longer than the client's `max_body_bytes`."""


def address_problem(url: str) -> str | None:
    """Why `url` must not be fetched for a remote caller (None when it may): not http(s), no host,
    or a host that resolves to a non-public address. A name that does not resolve is not refused
    here (fetching it fails on its own)."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https"):
        return "only http(s) URLs can be fetched"
    if not parts.hostname:
        return "the URL names no host"
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
        addresses = _resolve(parts.hostname, port)
    except (OSError, UnicodeError, ValueError):
        return None
    for text in addresses:
        address = ipaddress.ip_address(text.split("%")[0])
        if not _is_public(address):
            where = "is" if parts.hostname.strip("[]") == text else f"resolves to {address}, which is"
            return f"{parts.hostname} {where} {_address_kind(address)}, not a public address"
    return None


def _address_kind(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> str:
    kinds = (("a loopback address", "is_loopback"), ("a link-local address (cloud metadata)", "is_link_local"),
             ("a private address", "is_private"))
    for kind, flag in kinds:
        if getattr(address, flag):
            return kind
    return "a reserved or otherwise non-public address"


def _resolve(host: str, port: int) -> list[str]:
    """Every address `host` resolves to (a literal IP, in any notation inet_aton takes, included)."""
    return [info[4][0] for info in socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)]


def _is_public(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    mapped = getattr(address, "ipv4_mapped", None) or getattr(address, "sixtofour", None)
    if mapped is not None:
        return _is_public(mapped)
    return address.is_global and not address.is_multicast


class _PublicOnlyTransport(httpx.BaseTransport):
    """The outermost transport: refuses a request marked public-only whose host is not public."""

    def __init__(self, inner: httpx.BaseTransport) -> None:
        self._inner = inner

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        if request.extensions.get(_PUBLIC_ONLY):
            problem = address_problem(str(request.url))
            if problem:
                raise BlockedAddress(str(request.url), f"refused: {problem}")
        return self._inner.handle_request(request)

    def close(self) -> None:
        self._inner.close()


class HttpStatusError(SourceError):
    """The server answered with an error status (after retries, for retryable ones)."""

    def __init__(self, url: str, status_code: int, body: bytes, attempts: int = 1) -> None:
        reason = f"HTTP {status_code}" + (f" after {attempts} attempts" if attempts > 1 else "")
        super().__init__(url, reason)
        self.url = url
        self.status_code = status_code
        self.body = body


@dataclass
class HttpStats:
    """Counters for one client: cache hits, misses, and requests that reached the network."""

    cache_hits: int = 0
    cache_misses: int = 0
    network_requests: int = 0


class _RetryableStatus(Exception):
    """A 429/5xx answer that is worth another try."""

    def __init__(self, response: httpx.Response) -> None:
        super().__init__(f"HTTP {response.status_code}")
        self.response = response
        self.retry_after_s = parse_retry_after(response.headers.get("retry-after"))


def user_agent(contact: str) -> str:
    """The User-Agent every request carries, e.g. ``ftagent/0.1.0 (+https://…)``."""
    try:
        version = metadata.version("ftagent")
    except metadata.PackageNotFoundError:
        version = "0.0.0"
    return f"ftagent/{version} (+{contact})"


def parse_retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """Seconds to wait from a Retry-After header (delta-seconds or an HTTP date); None if absent/bad."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


def host_key(url: str | httpx.URL) -> str:
    """The key per-host pacing uses: ``host`` or ``host:port`` when a port is given."""
    return urlsplit(str(url)).netloc.lower()


class HostPacer:
    """Keeps a minimum interval between requests to the same host (thread-safe)."""

    def __init__(
        self,
        intervals: Mapping[str, float] | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._intervals = dict(intervals or {})
        self._last: dict[str, float] = {}
        self._lock = threading.Lock()
        self._clock = clock
        self._sleep = sleep

    def interval(self, host: str) -> float:
        """The minimum interval configured for a host (0 when none)."""
        return self._intervals.get(host, 0.0)

    def set_interval(self, host: str, seconds: float) -> None:
        """Set the minimum interval for a host."""
        with self._lock:
            self._intervals[host] = seconds

    def wait(self, host: str) -> None:
        """Block until the host may be called again, then mark it as called now."""
        with self._lock:
            gap = self._intervals.get(host, 0.0)
            last = self._last.get(host)
            now = self._clock()
            due = now if last is None else max(now, last + gap)
            self._last[host] = due
        if due > now:
            self._sleep(due - now)


class _PacedTransport(httpx.BaseTransport):
    """The network side of the cache: paces per host and counts real requests."""

    def __init__(self, inner: httpx.BaseTransport, pacer: HostPacer, stats: HttpStats) -> None:
        self._inner = inner
        self._pacer = pacer
        self._stats = stats
        self._lock = threading.Lock()

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        self._pacer.wait(host_key(request.url))
        with self._lock:
            self._stats.network_requests += 1
        return self._inner.handle_request(request)

    def close(self) -> None:
        self._inner.close()


def _cache_transport(
    inner: httpx.BaseTransport, cache_dir: Path, ttl_s: float | None
) -> httpx.BaseTransport:
    """hishel 2.x caching transport over an SQLite file in `cache_dir`."""
    from hishel import SqliteStorage
    from hishel.httpx import CacheTransport

    cache_dir.mkdir(parents=True, exist_ok=True)
    storage = SqliteStorage(database_path=cache_dir / CACHE_FILE, default_ttl=ttl_s)
    return CacheTransport(next_transport=inner, storage=storage)


class HttpClient:
    """A cached, paced, retrying HTTP client. One per job; sources share it."""

    def __init__(
        self,
        settings: HttpSettings | None = None,
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        """`transport` replaces the network transport (under the cache), e.g. for tests."""
        self.settings = settings or HttpSettings()
        self.stats = HttpStats()
        self.pacer = HostPacer(self.settings.per_host_min_interval, sleep=sleep)
        self._sleep = sleep
        network = _PacedTransport(transport or httpx.HTTPTransport(), self.pacer, self.stats)
        outer: httpx.BaseTransport = network
        if self.settings.cache_dir is not None:
            outer = _cache_transport(
                network, Path(self.settings.cache_dir), self.settings.cache_ttl_s
            )
        self._client = httpx.Client(
            transport=_PublicOnlyTransport(outer),
            timeout=httpx.Timeout(self.settings.timeout_s, connect=self.settings.connect_timeout_s),
            headers={"User-Agent": user_agent(self.settings.user_agent_contact)},
            follow_redirects=True,
        )
        self._stats_lock = threading.Lock()

    @property
    def user_agent(self) -> str:
        """The User-Agent header this client sends."""
        return self._client.headers["User-Agent"]

    def set_min_interval(self, host: str, seconds: float) -> None:
        """Pace a host unless the settings already name an interval for it (settings win)."""
        if host not in self.settings.per_host_min_interval:
            self.pacer.set_interval(host, seconds)

    def get(
        self,
        url: str,
        params: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
        public_only: bool = False,
    ) -> httpx.Response:
        """GET with cache, pacing and retries. Raises `SourceError` subclasses on failure.
        `public_only`: refuse the URL and every redirect hop unless its host is public."""
        return self.request("GET", url, params=params, headers=headers, public_only=public_only)

    def request(
        self,
        method: str,
        url: str,
        params: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
        data: Mapping[str, Any] | None = None,
        public_only: bool = False,
    ) -> httpx.Response:
        """Send one logical request (retried as needed) and return a 2xx/3xx response."""
        retrying = tenacity.Retrying(
            stop=tenacity.stop_after_attempt(self.settings.max_retries + 1),
            wait=self._wait_before_retry,
            retry=tenacity.retry_if_exception_type(
                (
                    _RetryableStatus,
                    httpx.ReadTimeout,
                    httpx.WriteTimeout,
                    httpx.PoolTimeout,
                    httpx.RemoteProtocolError,
                    httpx.ReadError,
                )
            ),
            sleep=self._sleep,
            reraise=True,
        )
        target = _describe(method, url, params)
        try:
            response = retrying(self._send_once, method, url, params, headers, data, public_only)
        except _RetryableStatus as exc:
            raise HttpStatusError(
                target,
                exc.response.status_code,
                exc.response.content,
                self.settings.max_retries + 1,
            ) from None
        except (httpx.ConnectError, httpx.ConnectTimeout, httpx.UnsupportedProtocol) as exc:
            raise NetworkUnavailable(target, f"cannot reach {host_key(url)}: {exc}") from None
        except httpx.TimeoutException as exc:
            raise SourceError(
                target, f"timed out after {self.settings.timeout_s:g}s: {exc!r}"
            ) from None
        except httpx.HTTPError as exc:
            raise SourceError(target, f"HTTP transport error: {exc!r}") from None
        self._count_cache(response)
        return response

    def _send_once(
        self,
        method: str,
        url: str,
        params: Mapping[str, Any] | None,
        headers: Mapping[str, str] | None,
        data: Mapping[str, Any] | None,
        public_only: bool = False,
    ) -> httpx.Response:
        """One attempt; raises `_RetryableStatus` for 429/5xx and `HttpStatusError` for 4xx."""
        request = self._client.build_request(method, url, params=params, headers=headers, data=data,
                                             extensions={_PUBLIC_ONLY: True} if public_only else None)
        response = self._client.send(request, stream=True)
        try:
            _read_capped(response, self.settings.max_body_bytes)
        finally:
            response.close()
        if response.status_code in RETRY_STATUSES:
            raise _RetryableStatus(response)
        if response.status_code >= 400:
            raise HttpStatusError(str(response.url), response.status_code, response.content)
        return response

    def _wait_before_retry(self, state: tenacity.RetryCallState) -> float:
        """Retry-After when the server gives one, else exponential backoff; both capped."""
        exc = state.outcome.exception() if state.outcome else None
        retry_after = exc.retry_after_s if isinstance(exc, _RetryableStatus) else None
        if retry_after is None:
            retry_after = self.settings.backoff_base_s * 2 ** (state.attempt_number - 1)
        return min(retry_after, self.settings.max_backoff_s)

    def _count_cache(self, response: httpx.Response) -> None:
        status = response.extensions.get("caching") or {}
        with self._stats_lock:
            if status.get("from_cache"):
                self.stats.cache_hits += 1
            else:
                self.stats.cache_misses += 1

    def close(self) -> None:
        """Close connections and the cache file."""
        self._client.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def _read_capped(response: httpx.Response, limit: int) -> None:
    """Read the body as a stream into the response, at most `limit` bytes (after decompression);
    BodyTooLarge past it. A cut-off body is never cached (the cache drops an unfinished stream)."""
    declared = response.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise BodyTooLarge(str(response.url), f"the body is {int(declared):,} bytes; the limit is {limit:,}")
    chunks, size = [], 0
    for chunk in response.iter_bytes():
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge(str(response.url), f"the body is longer than the limit of {limit:,} bytes")
        chunks.append(chunk)
    response._content = b"".join(chunks)  # what Response.read() sets; .content now works once closed


def _describe(method: str, url: str, params: Mapping[str, Any] | None) -> str:
    """A short, stable description of a request for error messages."""
    full = str(httpx.URL(url, params=params)) if params else url
    if len(full) > 300:
        full = full[:200] + "…#" + hashlib.sha1(full.encode()).hexdigest()[:8]
    return f"{method} {full}"
