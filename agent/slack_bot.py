"""The Slack door (slack-bolt): `/finetune <sentence>`, `/finetune status [job]`, `/finetune cancel [job]`,
and @mentions with the same words.

Every command is acknowledged at once (Slack wants an answer within 3 s: submitting only validates the
sentence and writes a row). A started job gets one channel message that is updated at each phase change
until the job ends; a worker (`ftagent worker` or `ftagent api`) runs the job. Requests must carry a valid
Slack signature (Bolt's RequestVerification, which also rejects timestamps more than 5 minutes old); a
timestamp that is not a number is a 400 before that.

Running it for a team:
- **Allowlist** (config or environment): `slack_allowed_teams` (workspace ids), `slack_allowed_channels`
  and `slack_users` ({Slack user id: ftagent user name}). When `slack_users` is set only those users are
  served, and their jobs belong to the mapped name (the one their API token has, so both doors show the
  same jobs); otherwise the Slack user id is the owner. Others get a short refusal, mentions in other
  channels are ignored.
- **Replays**: a signed request seen before (the same event_id, a slash command's trigger_id, else the same
  signature) within 10 minutes is acknowledged and not acted on again; Slack's own retries too. The ids
  are kept in the home's database, so a restarted bot still knows them.
- **Mentions never echoed**: every text that came from a user is escaped (`&`, `<`, `>`) before it is
  posted, so `<!channel>`, `<!here>` or `<@U…>` in a request can never notify anyone.
- Slack jobs are remote jobs: documents from the document roots only, public URLs only (agent/access.py).

Entry points: HTTP mode (`python -m agent.slack_bot --port 3000`, events at POST /slack/events) and
Socket Mode (`python -m agent.slack_bot --socket`, needs SLACK_APP_TOKEN). Tokens come from
SLACK_BOT_TOKEN and SLACK_SIGNING_SECRET (settings, agent/settings.py).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import re
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from slack_bolt import App, BoltRequest, BoltResponse
from slack_sdk import WebClient
from slack_sdk.errors import SlackClientError

from agent.access import Refused
from agent.clarify import clarifying_question
from agent.service import JobService, NotOwner
from agent.settings import ENVIRONMENT, Settings
from graphs.spec import RequestError
from tools.intake.request_reader import has_action
from tools.stores.api_tokens import Caller
from tools.stores.job_store import TERMINAL_STATUSES, JobRecord, UnknownJob
from tools.stores.sql_table import SqlTable

USAGE = ("Usage: `/finetune <what to learn>` (e.g. `/finetune SmolLM2 on marine biology`), "
         "`/finetune status [job]`, `/finetune cancel [job]`.")
_MENTION = re.compile(r"<@[A-Z0-9]+>")
REPLAY_WINDOW_S = 600  # longer than the 5 minutes Bolt accepts a timestamp for
NOT_ALLOWED = "Sorry, this fine-tuning bot is not enabled for you here; ask its operator to add you."
log = logging.getLogger(__name__)


def slack_escape(text: str) -> str:
    """Text Slack shows as typed: `<!channel>`, `<@U1>` or a link in it notify and link no one."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


class SeenRequests(SqlTable):
    """Ids of the signed Slack requests already handled (the home's database), for replay detection."""

    schema = "CREATE TABLE IF NOT EXISTS slack_seen (request_key TEXT PRIMARY KEY, seen_at REAL NOT NULL)"

    def first_time(self, key: str, now: float | None = None) -> bool:
        """Record `key`; False when it was already recorded within the replay window."""
        now = time.time() if now is None else now
        with self._connect() as connection:
            connection.execute("DELETE FROM slack_seen WHERE seen_at < ?", (now - REPLAY_WINDOW_S,))
            inserted = connection.execute("INSERT INTO slack_seen (request_key, seen_at) VALUES (?, ?) "
                                          "ON CONFLICT DO NOTHING", (key, now))
            return inserted.rowcount == 1


def request_key(body: dict[str, Any], raw_body: str, headers: dict[str, Any]) -> str:
    """What makes a Slack request the same request again: its event_id, a command's trigger_id, else
    its signature (the same body at the same timestamp)."""
    for name in ("event_id", "trigger_id"):
        if body.get(name):
            return f"{name}:{body[name]}"
    signature = headers.get("x-slack-signature") or [""]
    signature = signature[0] if isinstance(signature, list) else signature
    return "signature:" + (signature or hashlib.sha256(raw_body.encode()).hexdigest())


class SlackApp(App):
    """Bolt's App with a timestamp check before its signature check: a non-numeric
    X-Slack-Request-Timestamp would make Bolt's verifier fail with a 500."""

    def dispatch(self, req: BoltRequest) -> BoltResponse:
        stamp = req.headers.get("x-slack-request-timestamp") or [""]
        stamp = stamp[0] if isinstance(stamp, list) else stamp
        if stamp and not re.fullmatch(r"[0-9]{1,12}", stamp):
            return BoltResponse(status=400, body=json.dumps({"error": "X-Slack-Request-Timestamp must be a "
                                                                      "number of seconds"}))
        return super().dispatch(req)


@dataclass
class Reply:
    text: str
    job_id: str | None = None  # set when the message started a job (the bot then follows it)


@dataclass
class SlackDoor:
    """What the bot does with a user's words; independent of Bolt so every handler shares it."""

    service: JobService
    options: dict[str, Any] = field(default_factory=dict)  # options every Slack job gets (docs_path, …)
    poll_seconds: float = 1.0
    followers: list[threading.Thread] = field(default_factory=list)

    def caller(self, user_id: str, channel: str | None = None, team: str | None = None) -> Caller | None:
        """The ftagent user a Slack user acts as here, or None when the allowlist leaves them out."""
        settings = self.service.settings
        if settings.slack_allowed_teams and team not in settings.slack_allowed_teams:
            return None
        if settings.slack_allowed_channels and channel not in settings.slack_allowed_channels:
            return None
        if settings.slack_users:
            name = settings.slack_users.get(user_id)
            return Caller(name) if name else None
        return Caller(user_id)

    def handle_text(self, text: str, user: str) -> Reply:
        """The reply to `/finetune <text>` or a mention, from ftagent user `user` (see `caller`)."""
        words = text.strip().split()
        if not words or words[0].lower() in ("help", "usage"):
            return Reply(USAGE)
        if words[0].lower() == "status":
            return self._status(words[1] if len(words) > 1 else None, user)
        if words[0].lower() in ("cancel", "stop"):
            return self._cancel(words[1] if len(words) > 1 else None, user)
        return self._submit(text.strip(), user)

    def _submit(self, text: str, user: str) -> Reply:
        sentence = text if has_action(text) else f"fine-tune {text}"
        try:
            record = self.service.submit(sentence, dict(self.options), remote=Caller(user))
        except RequestError as error:
            return Reply(f"{clarifying_question(error)} ({error})")
        except Refused as error:
            return Reply(f"I cannot start that: {error}")
        return Reply(f"Queued job `{record.job_id}`: {self.service.understood(record)}. "
                     "I will post progress here.", record.job_id)

    def _latest_job(self, job_id: str | None, user: str) -> JobRecord | None:
        """The named job when it is the user's (UnknownJob for anyone else's), else their newest one."""
        if job_id:
            return self.service.job_for(job_id, Caller(user))
        return next(iter(self.service.list_jobs(Caller(user))), None)

    def _status(self, job_id: str | None, user: str) -> Reply:
        try:
            record = self._latest_job(job_id, user)
        except UnknownJob as error:
            return Reply(f"{error}.")
        if record is None:
            return Reply("You have no jobs yet. " + USAGE)
        status = self.service.status(record.job_id)
        latest = f" — {status['last_event']}" if status.get("last_event") else ""
        return Reply(f"Job `{record.job_id}` is {status['status']}{latest}.")

    def _cancel(self, job_id: str | None, user: str) -> Reply:
        try:
            record = self._latest_job(job_id, user)
            if record is None:
                return Reply("You have no job to cancel.")
            record = self.service.cancel(record.job_id, user)
        except (UnknownJob, NotOwner) as error:
            return Reply(f"{error}.")
        if record.status == "cancelled":
            return Reply(f"Job `{record.job_id}` is cancelled.")
        if record.status in TERMINAL_STATUSES:
            return Reply(f"Job `{record.job_id}` had already {record.status}.")
        return Reply(f"Stopping job `{record.job_id}` at its next step.")

    # -- progress messages -----------------------------------------------------------------------
    def follow(self, client: WebClient, channel: str, job_id: str, thread_ts: str | None = None) -> threading.Thread:
        """Post one message for the job and update it at each phase change, in a background thread."""
        thread = threading.Thread(target=self._follow, args=(client, channel, job_id, thread_ts), daemon=True,
                                  name=f"slack-follow-{job_id}")
        thread.start()
        self.followers.append(thread)  # listed once started: whoever joins the followers can join each one
        return thread

    def _follow(self, client: WebClient, channel: str, job_id: str, thread_ts: str | None) -> None:
        try:
            self._post_progress(client, channel, job_id, thread_ts)
        except (SlackClientError, OSError) as error:  # Slack unreachable: the job goes on, only the updates stop
            log.warning("stopped posting progress of job %s to Slack: %s", job_id, error)

    def _post_progress(self, client: WebClient, channel: str, job_id: str, thread_ts: str | None) -> None:
        posted = client.chat_postMessage(channel=channel, text=f"Job `{job_id}`: queued", thread_ts=thread_ts)
        ts = posted["ts"]
        for event in self.service.events(job_id, follow=True, poll_seconds=self.poll_seconds):
            if event["kind"] in ("phase", "cancel", "cancelled"):
                client.chat_update(channel=channel, ts=ts,
                                   text=slack_escape(f"Job `{job_id}` — {event['phase']}: {event['message']}"))
        record = self.service.jobs.get(job_id)
        client.chat_update(channel=channel, ts=ts,
                           text=slack_escape(f"Job `{job_id}` {record.status}: {record.outcome or ''}"))


def create_slack_app(door: SlackDoor, signing_secret: str, token: str, client: WebClient | None = None) -> App:
    """The Bolt app: signature verification on, replays dropped, handlers for /finetune and app_mention."""
    app = SlackApp(signing_secret=signing_secret, token=token, client=client or WebClient(token=token))
    seen = SeenRequests(door.service.settings.database)

    @app.middleware  # runs after Bolt's signature check: only signed requests are remembered
    def drop_replays(req, body, next) -> BoltResponse | None:
        if seen.first_time(request_key(body, req.raw_body, req.headers)):
            return next()
        log.info("ignored a replayed Slack request (retry %s)", req.headers.get("x-slack-retry-num"))
        return BoltResponse(status=200, body="")

    @app.command("/finetune")
    def finetune_command(ack, command, client) -> None:
        caller = door.caller(command["user_id"], command.get("channel_id"), command.get("team_id"))
        if caller is None:
            ack(text=NOT_ALLOWED, response_type="ephemeral")
            return
        reply = door.handle_text(command.get("text", ""), caller.user)
        ack(text=slack_escape(reply.text), response_type="ephemeral")
        if reply.job_id:
            door.follow(client, command["channel_id"], reply.job_id)

    @app.event("app_mention")
    def mention(event, body, client) -> None:
        caller = door.caller(event["user"], event.get("channel"), body.get("team_id"))
        if caller is None:
            log.info("ignored a mention from %s in %s (not on the allowlist)", event["user"], event.get("channel"))
            return
        text = _MENTION.sub("", event.get("text", "")).strip()
        reply = door.handle_text(text, caller.user)
        thread_ts = event.get("thread_ts") or event["ts"]
        client.chat_postMessage(channel=event["channel"], text=f"<@{event['user']}> {slack_escape(reply.text)}",
                                thread_ts=thread_ts)
        if reply.job_id:
            door.follow(client, event["channel"], reply.job_id, thread_ts=thread_ts)

    return app


def create_asgi_app(app: App):
    """HTTP mode: a Starlette app with POST /slack/events (commands and events) for uvicorn."""
    from slack_bolt.adapter.starlette import SlackRequestHandler
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.routing import Route

    handler = SlackRequestHandler(app)

    async def events(request: Request):
        return await handler.handle(request)

    return Starlette(routes=[Route("/slack/events", events, methods=["POST"])])


class SlackTokensMissing(RuntimeError):
    """The bot cannot start: the message names every missing environment variable."""


@dataclass(frozen=True)
class SlackTokens:
    signing_secret: str
    bot_token: str
    app_token: str | None  # Socket Mode only


# each credential's setting and where the Slack app's settings show it
_WHERE = {"slack_bot_token": "OAuth & Permissions > Bot User OAuth Token (xoxb-...)",
          "slack_signing_secret": "Basic Information > Signing Secret",
          "slack_app_token": "Basic Information > App-Level Tokens, scope connections:write (xapp-...)"}


def slack_tokens(settings: Settings, socket: bool) -> SlackTokens:
    """The Slack app's credentials from the settings (SLACK_BOT_TOKEN, SLACK_SIGNING_SECRET and, in
    Socket Mode, SLACK_APP_TOKEN, or the config file); SlackTokensMissing lists the ones not set, by
    their environment variable, and where to find them."""
    needed = [*_WHERE][: 3 if socket else 2]
    missing = [f"{ENVIRONMENT[name]} ({_WHERE[name]})" for name in needed if not getattr(settings, name)]
    if missing:
        raise SlackTokensMissing("the Slack bot needs these environment variables (or settings of the same "
                                 "name in lower case), from your Slack app's settings at api.slack.com/apps: "
                                 + "; ".join(missing))
    return SlackTokens(settings.slack_signing_secret or "", settings.slack_bot_token or "",
                       settings.slack_app_token if socket else None)


def run_slack_bot(service: JobService, socket: bool = False, host: str = "127.0.0.1", port: int = 3000) -> None:
    """Run the bot against Slack (HTTP events at /slack/events, or Socket Mode) until interrupted."""
    tokens = slack_tokens(service.settings, socket)
    app = create_slack_app(SlackDoor(service), tokens.signing_secret, tokens.bot_token)
    if socket:
        from slack_bolt.adapter.socket_mode import SocketModeHandler

        SocketModeHandler(app, tokens.app_token).start()
        return
    import uvicorn

    uvicorn.run(create_asgi_app(app), host=host, port=port, log_level="warning")


def main(argv: list[str] | None = None) -> int:
    """`python -m agent.slack_bot [--socket] [--port N]` (the same as `ftagent slack`)."""
    from agent.settings import resolve_settings

    parser = argparse.ArgumentParser(prog="ftagent-slack", description="The ftagent Slack bot.")
    parser.add_argument("--home")
    parser.add_argument("--socket", action="store_true", help="Socket Mode (SLACK_APP_TOKEN) instead of HTTP")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=3000)
    args = parser.parse_args(argv)
    try:
        run_slack_bot(JobService(resolve_settings({"home": args.home})), args.socket, args.host, args.port)
    except SlackTokensMissing as error:
        print(f"cannot start: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
