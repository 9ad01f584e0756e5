"""One sentence through chat, Slack (a replayed signed command), HTTP and Python becomes one and the same JobSpec."""

from __future__ import annotations

import json
import time

from fastapi.testclient import TestClient
from slack_bolt.request import BoltRequest
from slack_replay import SECRET, SlackApiRecorder, sign, slash_command_body
from slack_sdk import WebClient

from agent import FineTuner
from agent.api import PREFIX, create_app
from agent.chat import ChatSession
from agent.service import JobService
from agent.slack_bot import SlackDoor, create_slack_app
from graphs.context import resolve_settings
from graphs.spec import build_spec

SENTENCE = "fine-tune SmolLM2 on quantum error correction"


def test_the_same_sentence_yields_the_same_spec_through_every_door(home):
    service = JobService(resolve_settings({"home": str(home)}))
    chat = ChatSession(service, user="alice")
    chat.reply(SENTENCE)
    http = TestClient(create_app(service, "t")).post(f"{PREFIX}/jobs", json={"request": SENTENCE},
                                                      headers={"Authorization": "Bearer t"}).json()["job_id"]
    python = FineTuner(settings=service.settings, user="alice").submit(SENTENCE)
    with SlackApiRecorder() as slack_api:
        app = create_slack_app(SlackDoor(service), SECRET, "xoxb-test",
                               WebClient(token="xoxb-test", base_url=slack_api.base_url))
        body = slash_command_body("/finetune", SENTENCE)
        headers = {"content-type": "application/x-www-form-urlencoded", **sign(body, str(int(time.time())))}
        slack = json.loads(app.dispatch(BoltRequest(body=body, headers=headers)).body)["text"].split("`")[1]
        for job_id in (chat.job_id, http, python, slack):
            service.cancel(job_id, service.jobs.get(job_id).owner)  # let the Slack follower finish

    specs = {door: build_spec(service.jobs.get(job_id).request, service.jobs.get(job_id).options)
             for door, job_id in {"chat": chat.job_id, "http": http, "python": python, "slack": slack}.items()}
    assert len({spec.model_dump_json() for spec in specs.values()}) == 1, specs
    assert specs["slack"].subject == "quantum error correction" and specs["slack"].base_model == "smollm2-135m"
