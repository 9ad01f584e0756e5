"""Slack test helpers: the recorded payloads, signing (v0 HMAC-SHA256), and a local Slack Web API that records calls."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Self
from urllib.parse import parse_qs, urlencode

SLACK = Path(__file__).resolve().parents[3] / "shared" / "fixtures" / "slack"
VECTOR = json.loads((SLACK / "signing_secret_test_vector.json").read_text())
SECRET = VECTOR["signing_secret"]


def fixture_text(name: str) -> str:
    return (SLACK / name).read_text(encoding="utf-8")


def sign(body: str, timestamp: str, secret: str = SECRET) -> dict[str, str]:
    """The headers Slack sends: timestamp and v0=hex(HMAC_SHA256(secret, 'v0:ts:body'))."""
    digest = hmac.new(secret.encode(), f"v0:{timestamp}:{body}".encode(), hashlib.sha256).hexdigest()
    return {"x-slack-request-timestamp": timestamp, "x-slack-signature": f"v0={digest}"}


def slash_command_body(command: str, text: str, user_id: str | None = None) -> str:
    """The recorded bolt hello-world slash-command form body with its command/text (and user) replaced,
    and a fresh trigger_id, as Slack gives each invocation (the bot drops a repeated one as a replay)."""
    fields = {k: v[0] for k, v in parse_qs(fixture_text("slash_command_bolt_hello-world_body.txt"),
                                           keep_blank_values=True).items()}
    fields.update({"command": command, "text": text, "trigger_id": f"111.111.{uuid.uuid4().hex}",
                   **({"user_id": user_id} if user_id else {})})
    return urlencode(fields)


def mention_body(text: str | None = None) -> str:
    """The recorded bolt-python app_mention event_callback JSON (optionally with other words, then with a
    fresh event_id, as each new Slack event has)."""
    payload = json.loads(fixture_text("app_mention_event_callback_bolt-python.json"))
    if text is not None:
        payload["event"]["text"] = f"<@W111> {text}"
        payload["event_id"] = f"Ev{uuid.uuid4().hex[:10].upper()}"
    return json.dumps(payload)


class SlackApiRecorder:
    """A real HTTP server on 127.0.0.1 standing in for slack.com/api: answers ok and records each call."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.lock = threading.Lock()
        recorder = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers.get("content-length") or 0)).decode()
                is_json = "json" in (self.headers.get("content-type") or "")
                args = json.loads(raw) if is_json and raw else {k: v[0] for k, v in parse_qs(raw).items()}
                method = self.path.strip("/").split("/")[-1]
                with recorder.lock:
                    recorder.calls.append((method, args))
                reply = {"ok": True, "channel": args.get("channel"), "ts": "1700000000.000100"}
                if method == "auth.test":
                    reply.update(user_id="UBOT", bot_id="BBOT", team_id="T111", user="ftagent", team="test")
                body = json.dumps(reply).encode()
                self.send_response(200)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/api/"

    def methods(self) -> list[str]:
        with self.lock:
            return [method for method, _ in self.calls]

    def __enter__(self) -> Self:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
