"""The Slack bot fed the real recorded Slack payloads, signed; its Web API calls go to a local recorder."""

from __future__ import annotations

import json
import time

import httpx
import pytest
import slack_sdk.signature
from fastapi.testclient import TestClient
from live_server import live_server
from slack_bolt.request import BoltRequest
from slack_replay import (
    VECTOR,
    SlackApiRecorder,
    fixture_text,
    mention_body,
    sign,
    slash_command_body,
)
from slack_sdk import WebClient

from agent.service import JobService
from agent.settings import resolve_settings
from agent.slack_bot import SlackDoor, create_asgi_app, create_slack_app

FORM = {"content-type": "application/x-www-form-urlencoded"}
JSON = {"content-type": "application/json"}


@pytest.fixture()
def slack_api():
    with SlackApiRecorder() as recorder:
        yield recorder


@pytest.fixture()
def door(home, slack_api):
    service = JobService(resolve_settings({"home": str(home)}))
    service.settings.documents_root.mkdir(parents=True, exist_ok=True)  # Slack jobs read a document root only
    door = SlackDoor(service, options={"docs_path": str(service.settings.documents_root)}, poll_seconds=0.05)
    yield door
    for record in door.service.list_jobs():  # end every job so each progress follower finishes
        door.service.cancel(record.job_id, record.owner)
    for follower in door.followers:
        follower.join(10)


@pytest.fixture()
def app(door, slack_api):
    return create_slack_app(door, VECTOR["signing_secret"], "xoxb-test",
                            WebClient(token="xoxb-test", base_url=slack_api.base_url))


def _dispatch(app, body: str, content_type: dict[str, str], timestamp: str | None = None):
    headers = {**content_type, **sign(body, timestamp or str(int(time.time())))}
    return app.dispatch(BoltRequest(body=body, headers=headers))


def _wait_for(predicate, seconds: float = 10.0) -> None:
    deadline = time.monotonic() + seconds
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def test_the_published_signature_vector_is_accepted_and_stale_or_forged_requests_are_not(app, monkeypatch):
    body = fixture_text(VECTOR["body_file"])
    assert body == VECTOR["body"]
    headers = {**FORM, "x-slack-request-timestamp": VECTOR["X-Slack-Request-Timestamp"],
               "x-slack-signature": VECTOR["expected_X-Slack-Signature"]}
    stale = app.dispatch(BoltRequest(body=body, headers=headers))
    assert stale.status == 401  # five years old
    monkeypatch.setattr(slack_sdk.signature.Clock, "now", lambda self: float(VECTOR["X-Slack-Request-Timestamp"]))
    accepted = app.dispatch(BoltRequest(body=body, headers=headers))
    assert accepted.status == 404  # signature fine; /webhook-collect is not our command
    forged = app.dispatch(BoltRequest(body=body.replace("roadrunner", "coyote"), headers=headers))
    assert forged.status == 401
    unsigned = app.dispatch(BoltRequest(body=body, headers=FORM))
    assert unsigned.status == 401


def test_finetune_command_acks_fast_then_posts_and_updates_a_progress_message(app, door, slack_api):
    started = time.monotonic()
    response = _dispatch(app, slash_command_body("/finetune", "SmolLM2 on quantum error correction"), FORM)
    assert time.monotonic() - started < 3
    assert response.status == 200
    text = json.loads(response.body)["text"]
    assert text.startswith("Queued job") and "'quantum error correction'" in text
    job_id = text.split("`")[1]
    record = door.service.jobs.get(job_id)
    assert record.owner == "W111" and record.request == "fine-tune SmolLM2 on quantum error correction"
    _wait_for(lambda: "chat.postMessage" in slack_api.methods())
    door.service.cancel(job_id, "W111")  # the job ends, so the follower writes its last update and stops
    door.followers[-1].join(10)
    updates = [args["text"] for method, args in slack_api.calls if method == "chat.update"]
    assert updates[-1].startswith(f"Job `{job_id}` cancelled")
    assert slack_api.methods()[0] == "auth.test"


def test_status_and_owner_only_cancel_commands(app, door):
    job_id = door.handle_text("fine-tune on quantum error correction", "W111").job_id
    status = json.loads(_dispatch(app, slash_command_body("/finetune", "status"), FORM).body)["text"]
    assert status == f"Job `{job_id}` is queued."
    refused = json.loads(_dispatch(app, slash_command_body("/finetune", f"cancel {job_id}", "W999"), FORM).body)
    assert refused["text"] == f"no job with id {job_id!r}."  # another user's job is not even shown
    done = json.loads(_dispatch(app, slash_command_body("/finetune", "cancel"), FORM).body)["text"]
    assert done == f"Job `{job_id}` is cancelled."


def test_a_request_without_subject_gets_a_question(app):
    reply = json.loads(_dispatch(app, slash_command_body("/finetune", "SmolLM2 please"), FORM).body)["text"]
    assert reply.startswith("What should")


def test_mentions_reply_in_thread_and_can_start_a_job(app, door, slack_api):
    assert _dispatch(app, mention_body(), JSON).status == 200  # "<@W111> Hi there!" as recorded
    _wait_for(lambda: "chat.postMessage" in slack_api.methods())
    first = next(args for method, args in slack_api.calls if method == "chat.postMessage")
    assert first["channel"] == "C111" and first["thread_ts"] == "1595926230.009600"
    assert "fine-tune" in first["text"]  # a question back with an example, not a job
    assert door.service.list_jobs() == []
    _dispatch(app, mention_body("fine-tune on quantum error correction"), JSON)
    _wait_for(lambda: len(door.service.list_jobs()) == 1)
    assert door.service.list_jobs()[0].owner == "W222"
    door.service.cancel(door.service.list_jobs()[0].job_id, "W222")


def test_http_mode_rejects_unsigned_requests_and_serves_signed_ones(app):
    client = TestClient(create_asgi_app(app))
    body = slash_command_body("/finetune", "help")
    assert client.post("/slack/events", content=body, headers=FORM).status_code == 401
    signed = client.post("/slack/events", content=body, headers={**FORM, **sign(body, str(int(time.time())))})
    assert signed.status_code == 200 and signed.json()["text"].startswith("Usage")


# --- running it for a team: replays, bad timestamps, mentions, the allowlist (real HTTP, signed) ---------

@pytest.fixture()
def bot_url(app):
    with live_server(create_asgi_app(app)) as url:
        yield f"{url}/slack/events"


def _post(url: str, body: str, content_type: dict[str, str], timestamp: str | None = None,
          **headers: str) -> httpx.Response:
    signed = sign(body, timestamp or str(int(time.time())))
    return httpx.post(url, content=body, headers={**content_type, **signed, **headers}, timeout=60)


def test_a_replayed_command_or_event_starts_nothing_twice(bot_url, door, slack_api):
    command = slash_command_body("/finetune", "SmolLM2 on quantum error correction")
    assert "Queued job" in _post(bot_url, command, FORM).json()["text"]
    replay = _post(bot_url, command, FORM)  # the same signed bytes again, within the 5 minutes
    assert replay.status_code == 200 and replay.text == ""
    assert len(door.service.list_jobs()) == 1
    mention = mention_body("fine-tune on surface codes")
    _post(bot_url, mention, JSON)
    _wait_for(lambda: len(door.service.list_jobs()) == 2)
    later = str(int(time.time()) + 1)  # Slack's own retry: same event_id, new timestamp and signature
    assert _post(bot_url, mention, JSON, later, **{"x-slack-retry-num": "1"}).status_code == 200
    time.sleep(0.3)
    assert len(door.service.list_jobs()) == 2


def test_a_timestamp_that_is_not_a_number_gets_400(bot_url):
    body = slash_command_body("/finetune", "help")
    for stamp in ("abc", "1e9", "²", "-5"):
        headers = {**FORM, "x-slack-request-timestamp": stamp, "x-slack-signature": "v0=00"}
        reply = httpx.post(bot_url, content=body, headers={k: v.encode() for k, v in headers.items()}, timeout=60)
        assert reply.status_code == 400, stamp


def test_mentions_in_a_request_are_never_echoed(bot_url, door, slack_api):
    command = slash_command_body("/finetune", "SmolLM2 on <!channel> <@U0ADMIN> quantum codes")
    text = _post(bot_url, command, FORM).json()["text"]
    assert "<!channel>" not in text and "<@U0ADMIN>" not in text and "&lt;!channel&gt;" in text
    _post(bot_url, mention_body("<!here> please"), JSON)

    def replies():
        return [args["text"] for method, args in slack_api.calls
                if method == "chat.postMessage" and args.get("thread_ts")]

    _wait_for(lambda: replies())
    assert "<!here>" not in replies()[0] and "&lt;!here&gt;" in replies()[0]


def test_the_allowlist_maps_slack_users_to_names_and_refuses_the_rest(home, slack_api, monkeypatch):
    monkeypatch.setenv("FTAGENT_CONFIG", str(home / "team.yaml"))
    home.mkdir(parents=True, exist_ok=True)
    (home / "team.yaml").write_text("slack_allowed_teams: [T111]\nslack_allowed_channels: [C111]\n"
                                    "slack_users: {W111: alice}\n")
    service = JobService(resolve_settings({"home": str(home)}))
    service.settings.documents_root.mkdir(parents=True, exist_ok=True)
    door = SlackDoor(service, options={"docs_path": str(service.settings.documents_root)})
    app = create_slack_app(door, VECTOR["signing_secret"], "xoxb-test",
                           WebClient(token="xoxb-test", base_url=slack_api.base_url))
    allowed = json.loads(_dispatch(app, slash_command_body("/finetune", "SmolLM2 on quantum codes"), FORM).body)
    assert allowed["text"].startswith("Queued job")
    assert [r.owner for r in service.list_jobs()] == ["alice"]
    stranger = json.loads(_dispatch(app, slash_command_body("/finetune", "SmolLM2 on quantum codes", "W999"),
                                    FORM).body)
    assert stranger["text"].startswith("Sorry") and len(service.list_jobs()) == 1
    elsewhere = slash_command_body("/finetune", "SmolLM2 on quantum codes").replace("C111", "C999")
    assert json.loads(_dispatch(app, elsewhere, FORM).body)["text"].startswith("Sorry")
    for record in service.list_jobs():
        service.cancel(record.job_id, record.owner)
