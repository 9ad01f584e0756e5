"""A real HTTP server on 127.0.0.1 that replays recorded payloads, for the source tests.

Routes match a method, a path and (optionally) query parameters; each route answers with
a scripted sequence of replies (the last one repeats), so a test can say "503, then 200" or
"429 with Retry-After, then the recorded feed". Every request is recorded server-side, so
tests count what really reached the server (e.g. zero requests on a cache hit).
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Self
from urllib.parse import parse_qs, urlsplit

FIXTURES = Path(__file__).resolve().parents[3] / "shared" / "fixtures"

QueryMatch = Mapping[str, str] | Callable[[dict[str, str]], bool] | None


def fixture_bytes(relative: str) -> bytes:
    """The bytes of a recorded payload under ../shared/fixtures."""
    return (FIXTURES / relative).read_bytes()


def goldsmith_response(relative: str) -> bytes:
    """The response body of a goldsmith/Wikipedia fixture (stored inside a params wrapper)."""
    record = json.loads(fixture_bytes(relative))
    return json.dumps(record["response"]).encode()


def goldsmith_call(params_subset: Mapping[str, str]) -> bytes:
    """The response of the first call in goldsmith's mock data whose params include the subset."""
    calls = json.loads(fixture_bytes("wikipedia/goldsmith_request_mock_data_all.json"))["calls"]
    for call in calls:
        params = call["params_passed_to__wiki_request"]
        if all(str(params.get(k)) == v for k, v in params_subset.items()):
            return json.dumps(call["response"]).encode()
    raise KeyError(f"no goldsmith call with {dict(params_subset)}")


@dataclass
class Reply:
    """One scripted answer."""

    status: int = 200
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    delay_s: float = 0.0  # sleep before answering (to provoke client timeouts)


@dataclass
class RecordedRequest:
    """What the server saw."""

    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes
    at: float


@dataclass
class _Route:
    method: str
    path: str
    match: QueryMatch
    replies: list[Reply]
    served: int = 0

    def accepts(self, method: str, path: str, query: dict[str, str]) -> bool:
        if method != self.method or path != self.path:
            return False
        if self.match is None:
            return True
        if callable(self.match):
            return bool(self.match(query))
        return all(query.get(k) == v for k, v in self.match.items())

    def next_reply(self) -> Reply:
        reply = self.replies[min(self.served, len(self.replies) - 1)]
        self.served += 1
        return reply


class ReplayServer:
    """Threaded HTTP server on an ephemeral port; use as a context manager."""

    def __init__(self) -> None:
        self.requests: list[RecordedRequest] = []
        self._routes: list[_Route] = []
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        """Base URL, e.g. ``http://127.0.0.1:54321``."""
        assert self._server is not None, "server not started"
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    @property
    def netloc(self) -> str:
        """``127.0.0.1:<port>``, the key the HTTP layer paces by."""
        return self.url.removeprefix("http://")

    def add(
        self,
        path: str,
        replies: Reply | Sequence[Reply],
        *,
        method: str = "GET",
        match: QueryMatch = None,
    ) -> None:
        """Answer requests to `path` (whose query matches) with `replies` in order; the last repeats."""
        scripted = [replies] if isinstance(replies, Reply) else list(replies)
        with self._lock:
            self._routes.append(_Route(method, path, match, scripted))

    def count(self, path: str | None = None) -> int:
        """How many requests reached the server (for a path, or in all)."""
        with self._lock:
            return sum(1 for r in self.requests if path is None or r.path == path)

    def _answer(self, handler: BaseHTTPRequestHandler) -> None:
        parts = urlsplit(handler.path)
        query = {k: v[-1] for k, v in parse_qs(parts.query, keep_blank_values=True).items()}
        length = int(handler.headers.get("Content-Length") or 0)
        body = handler.rfile.read(length) if length else b""
        with self._lock:
            self.requests.append(
                RecordedRequest(
                    handler.command,
                    parts.path,
                    query,
                    dict(handler.headers),
                    body,
                    time.monotonic(),
                )
            )
            route = next(
                (r for r in self._routes if r.accepts(handler.command, parts.path, query)), None
            )
            reply = (
                route.next_reply()
                if route
                else Reply(404, b"no route for " + handler.path.encode())
            )
        if reply.delay_s:
            time.sleep(reply.delay_s)
        try:
            handler.send_response(reply.status)
            for name, value in reply.headers.items():
                handler.send_header(name, value)
            handler.send_header("Content-Length", str(len(reply.body)))
            handler.end_headers()
            if handler.command != "HEAD":
                handler.wfile.write(reply.body)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up (a timeout test); nothing to answer

    def __enter__(self) -> Self:
        replay = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                replay._answer(self)

            def do_POST(self) -> None:
                replay._answer(self)

            def do_HEAD(self) -> None:
                replay._answer(self)

            def log_message(self, format: str, *args: object) -> None:
                return

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._server.block_on_close = False
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self._server is None:
            return
        self._server.shutdown()
        self._server.server_close()
        self._server = None

    def stop(self) -> None:
        """Stop answering (the port closes), e.g. to simulate going offline."""
        self.__exit__(None, None, None)


def fast_http(tmp_path: Path, server: ReplayServer, pace: float | None = 0.0, **settings: object):
    """Our HTTP client set up for tests against the replay server: a cache in tmp_path, quick
    retries and backoff, and (unless pace is None) the server's host paced at `pace` seconds."""
    from tools.sources.http import HttpClient, HttpSettings

    values: dict[str, object] = {"cache_dir": tmp_path / "cache", "max_retries": 2, "backoff_base_s": 0.01,
                                 "max_backoff_s": 0.1, "timeout_s": 2.0}
    if pace is not None:
        values["per_host_min_interval"] = {server.netloc: pace}
    return HttpClient(HttpSettings(**{**values, **settings}))  # type: ignore[arg-type]


def unused_port() -> int:
    """A port on 127.0.0.1 that nothing listens on (bound, then released)."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def tiny_pdf(pages: Sequence[str]) -> bytes:
    """A small valid PDF with one line of Helvetica text per page (built by hand, no tools)."""
    objects: list[bytes] = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"",  # the page tree, filled in once the page object numbers are known
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    ]
    kids = []
    for text in pages:
        escaped = text.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")
        stream = f"BT /F1 12 Tf 72 720 Td ({escaped}) Tj ET".encode("latin-1")
        objects.append(b"<< /Length %d >>\nstream\n%s\nendstream" % (len(stream), stream))
        content_ref = len(objects)
        objects.append(
            b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] "
            b"/Resources << /Font << /F1 3 0 R >> >> /Contents %d 0 R >>" % content_ref
        )
        kids.append(b"%d 0 R" % len(objects))
    objects[1] = b"<< /Type /Pages /Kids [%s] /Count %d >>" % (b" ".join(kids), len(kids))
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n%s\nendobj\n" % (number, body)
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % offset for offset in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (
        len(objects) + 1,
        xref,
    )
    return bytes(out)
