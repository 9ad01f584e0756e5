"""The Slack door (slack-bolt): `/finetune <sentence>`, `/finetune status [job]`, `/finetune cancel [job]`,
and @mentions with the same words.

Every command is acknowledged at once (Slack wants an answer within 3 s: submitting only validates the
sentence and writes a row). A started job gets one channel message that is updated at each phase change
until the job ends; a worker (`ftagent worker` or `ftagent api`) runs the job. Requests must carry a valid
Slack signature (Bolt's RequestVerification, which also rejects timestamps more than 5 minutes old).

Entry points: HTTP mode (`python -m agent.slack_bot --port 3000`, events at POST /slack/events) and
Socket Mode (`python -m agent.slack_bot --socket`, needs SLACK_APP_TOKEN). Tokens come from
SLACK_BOT_TOKEN and SLACK_SIGNING_SECRET.
"""

from __future__ import annotations

import argparse
import logging
import os
import re
import threading
from dataclasses import dataclass, field
from typing import Any

from slack_bolt import App
from slack_sdk import WebClient
from slack_sdk.errors import SlackClientError

from agent.clarify import clarifying_question
from agent.service import JobService, NotOwner
from graphs.spec import RequestError, parse_request
from tools.job_store import TERMINAL_STATUSES, JobRecord, UnknownJob

USAGE = ("Usage: `/finetune <what to learn>` (e.g. `/finetune SmolLM2 on marine biology`), "
         "`/finetune status [job]`, `/finetune cancel [job]`.")
_MENTION = re.compile(r"<@[A-Z0-9]+>")
log = logging.getLogger(__name__)


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

    def handle_text(self, text: str, user: str) -> Reply:
        """The reply to `/finetune <text>` or a mention, from Slack user `user`."""
        words = text.strip().split()
        if not words or words[0].lower() in ("help", "usage"):
            return Reply(USAGE)
        if words[0].lower() == "status":
            return self._status(words[1] if len(words) > 1 else None, user)
        if words[0].lower() in ("cancel", "stop"):
            return self._cancel(words[1] if len(words) > 1 else None, user)
        return self._submit(text.strip(), user)

    def _submit(self, text: str, user: str) -> Reply:
        sentence = text if re.match(r"(?i)(fine[- ]?tune|finetune|train|teach|make|build)\b", text) else \
            f"fine-tune {text}"
        try:
            record = self.service.submit(sentence, dict(self.options), owner=user)
        except RequestError as error:
            return Reply(f"{clarifying_question(error)} ({error})")
        parsed = parse_request(sentence)
        model = self.options.get("base_model") or parsed["base_model"] or "the default model"
        return Reply(f"Queued job `{record.job_id}`: fine-tuning {model} on '{parsed['subject']}'. "
                     "I will post progress here.", record.job_id)

    def _latest_job(self, job_id: str | None, user: str) -> JobRecord | None:
        if job_id:
            return self.service.jobs.get(job_id)
        return next((r for r in self.service.list_jobs() if r.owner == user), None)

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
        self.followers.append(thread)
        thread.start()
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
                client.chat_update(channel=channel, ts=ts, text=f"Job `{job_id}` — {event['phase']}: {event['message']}")
        record = self.service.jobs.get(job_id)
        client.chat_update(channel=channel, ts=ts, text=f"Job `{job_id}` {record.status}: {record.outcome or ''}")


def create_slack_app(door: SlackDoor, signing_secret: str, token: str, client: WebClient | None = None) -> App:
    """The Bolt app: signature verification on, handlers for /finetune and app_mention."""
    app = App(signing_secret=signing_secret, token=token, client=client or WebClient(token=token))

    @app.command("/finetune")
    def finetune_command(ack, command, client) -> None:
        reply = door.handle_text(command.get("text", ""), command["user_id"])
        ack(text=reply.text, response_type="ephemeral")
        if reply.job_id:
            door.follow(client, command["channel_id"], reply.job_id)

    @app.event("app_mention")
    def mention(event, client) -> None:
        text = _MENTION.sub("", event.get("text", "")).strip()
        reply = door.handle_text(text, event["user"])
        thread_ts = event.get("thread_ts") or event["ts"]
        client.chat_postMessage(channel=event["channel"], text=f"<@{event['user']}> {reply.text}", thread_ts=thread_ts)
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


def main(argv: list[str] | None = None) -> int:
    """`python -m agent.slack_bot [--socket] [--port N]`: run the bot against Slack."""
    from graphs.context import resolve_settings

    parser = argparse.ArgumentParser(prog="ftagent-slack", description="The ftagent Slack bot.")
    parser.add_argument("--home")
    parser.add_argument("--socket", action="store_true", help="Socket Mode (SLACK_APP_TOKEN) instead of HTTP")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=3000)
    args = parser.parse_args(argv)
    door = SlackDoor(JobService(resolve_settings({"home": args.home})))
    app = create_slack_app(door, os.environ["SLACK_SIGNING_SECRET"], os.environ["SLACK_BOT_TOKEN"])
    if args.socket:
        from slack_bolt.adapter.socket_mode import SocketModeHandler

        SocketModeHandler(app, os.environ["SLACK_APP_TOKEN"]).start()
        return 0
    import uvicorn

    uvicorn.run(create_asgi_app(app), host=args.host, port=args.port, log_level="warning")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
