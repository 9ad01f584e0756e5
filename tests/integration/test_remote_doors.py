"""The HTTP API run for a team, tried as an attacker would, against the real app served by uvicorn on
loopback: identity from per-user tokens, document roots, no private-network URLs, bounds on everything."""

from __future__ import annotations

import json
import sqlite3
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest
from live_server import live_server
from tiny_job import SUBJECT_SENTENCE

from agent.api import PREFIX, create_app
from agent.cli import main
from agent.service import JobService
from agent.settings import resolve_settings
from tools.stores.api_tokens import TokenStore

ADMIN_TOKEN = "admin-token-for-tests"
HTTP = httpx.Client(timeout=60)  # generous: the shared test machine can be slow; a hang still fails


@pytest.fixture()
def roots(tmp_path) -> Path:
    extra = tmp_path / "shared-docs"
    (extra / "papers").mkdir(parents=True)
    (extra / "papers" / "a.md").write_text("quantum error correction " * 50)
    return extra


@pytest.fixture()
def service(home, roots, monkeypatch) -> JobService:
    monkeypatch.setenv("FTAGENT_DOCUMENT_ROOTS", str(roots))
    service = JobService(resolve_settings({"home": str(home)}))
    (service.settings.documents_root / "qec").mkdir(parents=True)
    return service


@pytest.fixture()
def api(service):
    """(base URL, {user: headers}) for alice, bob (users) and the admin token."""
    store = TokenStore(service.settings.database)
    tokens = {"alice": store.add("alice"), "bob": store.add("bob"), "admin": ADMIN_TOKEN}
    with live_server(create_app(service, ADMIN_TOKEN, poll_seconds=0.05)) as url:
        yield f"{url}{PREFIX}", {name: {"Authorization": f"Bearer {token}"} for name, token in tokens.items()}


def _submit(base: str, headers: dict[str, str], **options) -> httpx.Response:
    return HTTP.post(f"{base}/jobs", json={"request": SUBJECT_SENTENCE, "options": options}, headers=headers)


# --- identity from the token --------------------------------------------------------------------------

def test_token_commands_print_a_token_once_and_store_only_its_hash(home, capsys):
    assert main(["--home", str(home), "token", "add", "carol"]) == 0
    token = capsys.readouterr().out.strip().splitlines()[-1]
    assert len(token) >= 40
    assert main(["--home", str(home), "token", "add", "carol"]) == 2  # one live token per name
    assert "already has a token" in capsys.readouterr().out
    assert main(["--home", str(home), "token", "add", "dave", "--admin"]) == 0
    capsys.readouterr()
    assert main(["--home", str(home), "token", "list"]) == 0
    listing = capsys.readouterr().out
    assert "carol" in listing and "dave" in listing and "admin" in listing and token not in listing
    raw = b"".join(p.read_bytes() for p in home.glob("ftagent.sqlite*"))
    assert token.encode() not in raw
    store = TokenStore(home / "ftagent.sqlite")
    assert store.caller(token).user == "carol"
    assert main(["--home", str(home), "token", "revoke", "carol"]) == 0
    assert store.caller(token) is None
    assert main(["--home", str(home), "token", "revoke", "carol"]) == 2


def test_the_user_comes_from_the_token_and_others_jobs_are_invisible(api, service):
    base, users = api
    job = _submit(base, {**users["alice"], "X-Ftagent-User": "bob"}, docs_path="qec").json()
    assert job["owner"] == "alice"  # the header is ignored
    job_id = job["job_id"]
    as_bob = {**users["bob"], "X-Ftagent-User": "alice"}
    for reply in (HTTP.get(f"{base}/jobs/{job_id}", headers=as_bob),
                  HTTP.post(f"{base}/jobs/{job_id}/cancel", headers=as_bob),
                  HTTP.get(f"{base}/jobs/{job_id}/events", headers=as_bob)):
        assert reply.status_code == 404 and reply.json()["error"] == f"no job with id {job_id!r}"
    assert HTTP.get(f"{base}/jobs", headers=as_bob).json() == []
    assert [j["job_id"] for j in HTTP.get(f"{base}/jobs", headers=users["alice"]).json()] == [job_id]
    assert [j["job_id"] for j in HTTP.get(f"{base}/jobs", headers=users["admin"]).json()] == [job_id]
    assert service.jobs.get(job_id).status == "queued"
    cancelled = HTTP.post(f"{base}/jobs/{job_id}/cancel", headers=users["alice"])
    assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"
    TokenStore(service.settings.database).revoke("alice")
    assert HTTP.get(f"{base}/jobs", headers=users["alice"]).status_code == 401


def test_an_admin_may_cancel_anyones_job(api):
    base, users = api
    job_id = _submit(base, users["bob"], docs_path="qec").json()["job_id"]
    assert HTTP.post(f"{base}/jobs/{job_id}/cancel", headers=users["admin"]).json()["status"] == "cancelled"


def test_feedback_is_the_callers_and_bounded(api, service):
    base, users = api
    service.registry.register(_version(service))
    body = {"model": "ft-qec-v1", "question": "What is a logical qubit?", "answer": "?", "rating": -1}
    stored = HTTP.post(f"{base}/feedback", json={**body, "correction": "Many physical qubits."},
                        headers={**users["bob"], "X-Ftagent-User": "alice"})
    assert stored.status_code == 201 and stored.json()["user"] == "bob"
    long = HTTP.post(f"{base}/feedback", json={**body, "correction": "call 555-0100 " * 400}, headers=users["bob"])
    assert long.status_code == 422 and "correction" in long.json()["error"]
    huge = HTTP.post(f"{base}/feedback", json={**body, "correction": "x" * 1_100_000}, headers=users["bob"])
    assert huge.status_code == 413
    assert [f.user for f in service.feedback_store.list("ft-qec-v1")] == ["bob"]


def _version(service: JobService):
    from tools.stores.model_registry import ModelVersion

    return ModelVersion(name="ft-qec-v1", family="ft-qec", version=1, base_model="tiny",
                        base_model_path="/nonexistent", subject="quantum error correction", status="staging",
                        gates_passed=True, adapter_path="/nonexistent", merged_path=None, card_path="",
                        dataset_hash="h", job_id="job-1", round=1, created_at="2026-01-01T00:00:00Z",
                        sources=[], config={}, metrics={})


# --- document roots -----------------------------------------------------------------------------------

def test_docs_path_must_lie_in_a_document_root_and_the_refusal_reveals_nothing(api, service, home, tmp_path):
    base, users = api
    (service.settings.documents_root / "escape").symlink_to("/etc")
    refusals = {}
    for given in ("/etc", str(home), "~", "../../etc", "escape", str(home / "jobs"), "/no/such/folder",
                  str(tmp_path), "/"):
        reply = _submit(base, users["alice"], docs_path=given)
        assert reply.status_code == 403, (given, reply.text)
        refusals[given] = reply.json()["error"]
    assert len(set(refusals.values())) == 1  # the same words whether the path exists or not
    message = next(iter(refusals.values()))
    assert str(service.settings.documents_root.resolve()) in message and str(Path(tmp_path, "shared-docs")) in message
    assert "exist" not in message
    dataset = _submit(base, users["alice"], dataset="/etc/passwd")
    assert dataset.status_code == 403 and dataset.json()["error"].startswith("dataset must be inside")
    inside = _submit(base, users["alice"], docs_path="qec")
    assert inside.status_code == 201
    assert inside.json()["options"]["docs_path"] == str((service.settings.documents_root / "qec").resolve())
    extra_root = _submit(base, users["alice"], docs_path=str(tmp_path / "shared-docs" / "papers"))
    assert extra_root.status_code == 201 and extra_root.json()["options"]["allow_private_urls"] is False
    missing_inside = _submit(base, users["alice"], docs_path="not-there")
    assert missing_inside.status_code == 400 and "does not exist" in missing_inside.json()["error"]


def test_the_local_cli_still_reads_any_folder(service, tmp_path):
    record = service.submit(SUBJECT_SENTENCE, {"docs_path": str(tmp_path)})
    assert record.options["docs_path"] == str(tmp_path.resolve())


def test_evaluation_sets_only_from_own_jobs_roots_or_eval_sets(api, service):
    base, users = api
    other = service.submit(SUBJECT_SENTENCE, {"docs_path": "/tmp"}, owner="alice")
    (service.settings.job_paths(other.job_id).dataset).mkdir(parents=True)
    test_set = service.settings.job_paths(other.job_id).dataset / "test.jsonl"
    test_set.write_text(json.dumps({"question": "q", "answer": "a"}) + "\n")
    for path in (str(test_set), "/etc/passwd", str(service.settings.home / "api_token")):
        reply = HTTP.post(f"{base}/evaluations", json={"model": "base", "dataset_path": path}, headers=users["bob"])
        assert reply.status_code == 422 and "one of your jobs" in reply.json()["error"], path


# --- URLs ---------------------------------------------------------------------------------------------

def test_private_urls_are_refused_at_submit_naming_the_url(api):
    base, users = api
    for url in ("http://127.0.0.1:9/", "http://localhost/", "http://169.254.169.254/latest/meta-data",
                "http://10.1.2.3/", "http://[::1]/", "http://2130706433/", "file:///etc/passwd"):
        reply = _submit(base, users["admin"], urls=[url])
        assert reply.status_code == 422, (url, reply.text)
        assert url in reply.json()["error"] and reply.json()["url"] == url
    opt_in = _submit(base, users["admin"], urls=["http://127.0.0.1:9/"], allow_private_urls=True)
    assert opt_in.status_code == 403 and "local CLI" in opt_in.json()["error"]


# --- bounds -------------------------------------------------------------------------------------------

def test_bodies_over_a_megabyte_get_413_with_or_without_a_length(api):
    base, users = api
    big = json.dumps({"request": SUBJECT_SENTENCE, "options": {"research": {"extra_queries": ["x" * 1_100_000]}}})
    assert HTTP.post(f"{base}/jobs", content=big, headers={**users["alice"], "content-type": "application/json"}
                      ).status_code == 413

    def chunks():
        for start in range(0, len(big), 65536):
            yield big[start:start + 65536].encode()

    streamed = HTTP.post(f"{base}/jobs", content=chunks(), headers={**users["alice"],
                                                                     "content-type": "application/json"})
    assert streamed.status_code == 413 and "1,000,000" in streamed.json()["error"]


@pytest.mark.parametrize(("options", "named"), [
    ({"training": {"trainig": 1}}, "training.trainig"),
    ({"trainig": {"epochs": 1}}, "trainig"),
    ({"evaluation": {"generate_limt": 5}}, "evaluation.generate_limt"),
    ({"training": {"max_steps": 10 ** 9}}, "training.max_steps"),
    ({"training": {"batch_size": 100_000}}, "training.batch_size"),
    ({"training": {"max_seq_len": 1_000_000}}, "training.max_seq_len"),
    ({"evaluation": {"generate_limit": 10 ** 6}}, "evaluation.generate_limit"),
    ({"evaluation": {"general_texts": 10 ** 6}}, "evaluation.general_texts"),
])
def test_unknown_keys_at_any_depth_and_huge_numbers_are_refused_by_name(api, options, named):
    base, users = api
    reply = _submit(base, users["alice"], docs_path="qec", **options)
    assert reply.status_code == 400 and f"invalid option {named}:" in reply.json()["error"], reply.text


def test_only_an_admin_may_loosen_a_gate(api):
    base, users = api
    looser = _submit(base, users["alice"], docs_path="qec", gates={"min_nll_improvement": 0.0})
    assert looser.status_code == 403 and "gates.min_nll_improvement" in looser.json()["error"]
    assert _submit(base, users["alice"], docs_path="qec", gates={"max_general_ppl_increase": 5}).status_code == 403
    assert _submit(base, users["alice"], docs_path="qec", gates={"min_nll_improvement": 0.2}).status_code == 201
    assert _submit(base, users["admin"], docs_path="qec", gates={"min_nll_improvement": 0.0}).status_code == 201
    folder = _submit(base, users["alice"], docs_path="qec", base_model="/etc")
    assert folder.status_code == 403 and "admin" in folder.json()["error"]
    in_sentence = HTTP.post(f"{base}/jobs", json={"request": "fine-tune ../../etc on quantum codes",
                                                   "options": {"docs_path": "qec"}}, headers=users["alice"])
    assert in_sentence.status_code == 403 and "exist" not in in_sentence.json()["error"]


def test_malformed_text_and_event_ids_get_4xx_not_500(api):
    base, users = api
    surrogate = '{"request": "fine-tune on quantum \\ud800 error correction"}'
    reply = HTTP.post(f"{base}/jobs", content=surrogate, headers={**users["alice"],
                                                                   "content-type": "application/json"})
    # the request reader answers malformed text in the request with 422; the body check with 400: both 4xx
    assert reply.status_code in (400, 422) and ("malformed text" in reply.text or "unicode" in reply.text)
    in_options = '{"request": "fine-tune on qec", "options": {"research": {"extra_queries": ["\\udc80"]}}}'
    assert HTTP.post(f"{base}/jobs", content=in_options, headers={**users["alice"],
                                                                   "content-type": "application/json"}
                      ).status_code in (400, 422)
    job_id = _submit(base, users["alice"], docs_path="qec").json()["job_id"]
    for bad in ("²".encode(), b"-1", b"abc", b"9" * 40):
        stream = HTTP.get(f"{base}/jobs/{job_id}/events", headers={**users["alice"], "Last-Event-ID": bad})
        assert stream.status_code == 400 and "Last-Event-ID" in stream.json()["error"], bad


def test_the_event_stream_tails_from_an_offset_and_resumes_after_an_id(api, service):
    base, users = api
    job_id = _submit(base, users["alice"], docs_path="qec").json()["job_id"]
    log = service.settings.job_paths(job_id).events
    from tools.events import EventLog

    for number in range(3):
        EventLog(log).emit("service", "decision", f"event {number}")
    with log.open("a") as handle:
        handle.write('{"ts": 1, "phase": "torn')  # a write cut short: not an event (yet)
    service.cancel(job_id, "alice")

    def kinds_and_ids(headers):
        text = HTTP.get(f"{base}/jobs/{job_id}/events", headers=headers).text
        ids = [int(line[4:]) for line in text.splitlines() if line.startswith("id: ")]
        return ids, [line[7:] for line in text.splitlines() if line.startswith("event: ")]

    # the torn line is skipped; the cancel event after it starts on a new line instead of being glued on
    assert kinds_and_ids(users["alice"]) == ([1, 2, 3, 4], ["decision", "decision", "decision", "cancelled", "end"])
    assert kinds_and_ids({**users["alice"], "Last-Event-ID": "2"}) == ([3, 4], ["decision", "cancelled", "end"])


def test_read_from_returns_complete_lines_and_the_next_offset(tmp_path):
    from tools.events import read_from

    path = tmp_path / "events.jsonl"
    path.write_text('{"kind": "a"}\n{"kind": "b"}\n{"kind": "c"')
    events, offset = read_from(path, 0)
    assert [e["kind"] for e in events] == ["a", "b"] and offset == len('{"kind": "a"}\n{"kind": "b"}\n')
    with path.open("a") as handle:
        handle.write('}\nnot json\n{"kind": "d"}\n')
    events, offset = read_from(path, offset)
    assert [e["kind"] for e in events] == ["c", "d"] and offset == path.stat().st_size
    assert read_from(path, offset) == ([], offset)


# --- the HTTP layer: redirects to private addresses, body caps ----------------------------------------

class _Site:
    """A real HTTP server on 127.0.0.1: /start redirects to /secret on 127.0.0.1; /big sends 3 MB."""

    def __init__(self) -> None:
        self.paths: list[str] = []
        site = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                site.paths.append(self.path)
                if self.path == "/start":
                    self.send_response(302)
                    self.send_header("Location", f"http://127.0.0.1:{site.port}/secret")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                body = b"internal secret " * (200_000 if self.path.startswith("/big") else 20)
                self.send_response(200)
                self.send_header("Content-Type", "text/plain")
                if self.path != "/big-chunked":
                    self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture()
def site():
    site = _Site()
    yield site
    site.close()


class _ToLoopback(httpx.BaseTransport):
    """Connects requests for the made-up public host `public.test` to the local site (no DNS needed)."""

    def __init__(self, port: int) -> None:
        self.inner, self.port = httpx.HTTPTransport(), port

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        if request.url.host == "public.test":
            request.url = request.url.copy_with(host="127.0.0.1", port=self.port)
        return self.inner.handle_request(request)


def test_a_redirect_to_loopback_is_refused_at_the_hop_and_nothing_is_read(site, tmp_path, monkeypatch):
    import tools.sources.http as http_layer
    from tools.sources.documents import Reference, SourceError
    from tools.sources.http import HttpClient, HttpSettings
    from tools.sources.web_source import WebSettings, WebSource

    real = http_layer._resolve
    monkeypatch.setattr(http_layer, "_resolve", lambda host, port: ["93.184.216.34"] if host == "public.test"
                        else real(host, port))
    client = HttpClient(HttpSettings(cache_dir=tmp_path / "cache", max_retries=0), transport=_ToLoopback(site.port))
    source = WebSource(client, WebSettings(urls=("http://public.test/start",), public_only=True,
                                           respect_robots=False))
    with pytest.raises(SourceError, match="127.0.0.1 is a loopback address"):
        source.fetch(Reference(source="web", native_id="http://public.test/start", title="", uri=""))
    assert site.paths == ["/start"]  # the redirect was answered; its target was never asked for
    local = WebSource(client, WebSettings(respect_robots=False, min_text_chars=10))  # the local CLI's jobs
    document = local.fetch(Reference(source="web", native_id=f"http://127.0.0.1:{site.port}/start", title="", uri=""))
    assert "internal secret" in document.text and site.paths[-1] == "/secret"
    with pytest.raises(SourceError, match="127.0.0.1 is a loopback"):  # cached by the local job, still refused
        client.get(f"http://127.0.0.1:{site.port}/secret", public_only=True)


@pytest.mark.parametrize("path", ["/big", "/big-chunked"])
def test_bodies_over_the_cap_fail_and_are_not_cached(site, tmp_path, path):
    from tools.sources.http import BodyTooLarge, HttpClient, HttpSettings

    client = HttpClient(HttpSettings(cache_dir=tmp_path / "cache", max_retries=0, max_body_bytes=1_000_000))
    with pytest.raises(BodyTooLarge, match="1,000,000"):
        client.get(f"http://127.0.0.1:{site.port}{path}")
    with pytest.raises(BodyTooLarge):
        client.get(f"http://127.0.0.1:{site.port}{path}")
    assert site.paths == [path, path]  # asked for again: the cut-off body was not cached
    cache = sqlite3.connect(tmp_path / "cache" / "http-cache.sqlite")
    assert cache.execute("SELECT count(*) FROM entries WHERE chunk_count IS NOT NULL").fetchone()[0] == 0


def test_a_chat_session_opened_by_a_remote_caller_follows_the_remote_rules(service):
    from agent.chat import ChatSession
    from tools.stores.api_tokens import Caller

    outside = ChatSession(service, user="alice", options={"docs_path": "/etc"}, use_chat_model=False,
                          remote=Caller("alice"))
    reply = outside.reply("fine-tune SmolLM2 on quantum error correction")
    assert reply.startswith("I cannot start that: docs_path must be inside one of the document roots")
    inside = ChatSession(service, user="alice", options={"docs_path": "qec", "urls": ["http://10.0.0.7/x"]},
                         use_chat_model=False, remote=Caller("alice"))
    assert "10.0.0.7 is a private address" in inside.reply("fine-tune SmolLM2 on quantum error correction")
    inside.options.pop("urls")
    assert inside.reply("fine-tune SmolLM2 on quantum error correction").startswith("Started job")
    assert "replaced it" in inside.reply("use pubmed only")  # resubmitted under the same rules
    assert [r.owner for r in service.list_jobs()] == ["alice", "alice"]


def test_only_an_admin_changes_the_registry_and_artefacts_are_the_owners(api, service):
    base, users = api
    service.registry.register(_version(service))
    for method, path in (("POST", "/models/ft-qec-v1/promote"), ("POST", "/models/ft-qec-v1/rollback"),
                         ("DELETE", "/models/ft-qec-v1")):
        reply = HTTP.request(method, f"{base}{path}", headers=users["alice"])
        assert reply.status_code == 403 and "only an admin" in reply.json()["error"], path
    assert service.registry.get("ft-qec-v1").status == "staging"
    job_id = _submit(base, users["alice"], docs_path="qec").json()["job_id"]
    for what in ("dataset", "evaluation", "rounds"):
        assert HTTP.get(f"{base}/jobs/{job_id}/{what}", headers=users["bob"]).status_code == 404
        assert HTTP.get(f"{base}/jobs/{job_id}/{what}", headers=users["alice"]).status_code == 200
