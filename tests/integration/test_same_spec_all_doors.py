"""One sentence through chat, Slack (a replayed signed command), HTTP, Python and the CLI's dry run becomes
one and the same JobSpec (the CLI's --dry-run YAML parses back to it), and every door shows the same line
of what was understood."""

from __future__ import annotations

import json
import time

import pytest
import yaml
from fastapi.testclient import TestClient
from hub_cache import cache_under_id, use_cache
from slack_bolt.request import BoltRequest
from slack_replay import SECRET, SlackApiRecorder, sign, slash_command_body
from slack_sdk import WebClient

from agent import FineTuner
from agent.api import PREFIX, create_app
from agent.chat import ChatSession
from agent.cli import main as cli
from agent.service import JobService
from agent.settings import resolve_settings
from agent.slack_bot import SlackDoor, create_slack_app
from graphs.spec import build_spec, understood_line

SENTENCES = [
    ("fine-tune SmolLM2 on quantum error correction", "quantum error correction", "smollm2-135m"),
    ("I want a model that knows the GDPR inside out (qwen please)", "the GDPR", "qwen2.5-0.5b"),
    ("smollm2: organic chemistry reaction mechanisms, in 3 epochs with a rank of 8 from PubMed",
     "organic chemistry reaction mechanisms", "smollm2-135m"),
    ("can u teach smol lm2 about квантовая механика thx", "квантовая механика", "smollm2-135m"),
]


def _slack_job(service: JobService, sentence: str) -> tuple[str, str]:
    with SlackApiRecorder() as slack_api:
        door = SlackDoor(service, poll_seconds=0.05)
        app = create_slack_app(door, SECRET, "xoxb-test",
                               WebClient(token="xoxb-test", base_url=slack_api.base_url))
        body = slash_command_body("/finetune", sentence)
        headers = {"content-type": "application/x-www-form-urlencoded", **sign(body, str(int(time.time())))}
        text = json.loads(app.dispatch(BoltRequest(body=body, headers=headers)).body)["text"]
        job_id = text.split("`")[1]
        service.cancel(job_id, service.jobs.get(job_id).owner)  # let the Slack follower finish
        for follower in door.followers:
            follower.join(timeout=10)
    return job_id, text


@pytest.fixture(autouse=True)
def catalogue_models_in_a_local_cache(tmp_path, monkeypatch, tiny_model_dir):
    """Doors check the base model before queueing: the catalogue's Qwen is found in a private cache."""
    use_cache(monkeypatch, tmp_path / "hf-cache")
    cache_under_id(tiny_model_dir, tmp_path / "hf-cache", "Qwen/Qwen2.5-0.5B-Instruct")


@pytest.mark.parametrize(("sentence", "subject", "model"), SENTENCES)
def test_the_same_sentence_yields_the_same_spec_through_every_door(home, capsys, sentence, subject, model):
    service = JobService(resolve_settings({"home": str(home)}))
    chat = ChatSession(service, user="alice")
    chat_reply = chat.reply(sentence)
    http = TestClient(create_app(service, "t")).post(f"{PREFIX}/jobs", json={"request": sentence},
                                                      headers={"Authorization": "Bearer t"}).json()
    tuner = FineTuner(settings=service.settings, user="alice")
    python = tuner.submit(sentence)
    slack, slack_reply = _slack_job(service, sentence)
    for job_id in (chat.job_id, http["job_id"], python):
        service.cancel(job_id, service.jobs.get(job_id).owner)
    capsys.readouterr()
    assert cli(["--home", str(home), "run", sentence, "--dry-run"]) == 0
    printed = capsys.readouterr().out
    assert "# understood: " in printed, printed
    cli_line, cli_yaml = printed[printed.index("# understood: "):].split("\n", 1)

    jobs = {"chat": chat.job_id, "http": http["job_id"], "python": python, "slack": slack}
    specs = {door: build_spec(service.jobs.get(job_id).request, service.jobs.get(job_id).options)
             for door, job_id in jobs.items()}
    specs["cli"] = type(specs["chat"]).model_validate(
        {k: v for k, v in yaml.safe_load(cli_yaml).items() if k != "request"})
    # the one field a door sets on purpose: remote doors never fetch private addresses (issue 12)
    assert {door: spec.allow_private_urls for door, spec in specs.items()} == {
        "chat": True, "http": False, "python": True, "slack": False, "cli": True}
    said = {door: spec.model_dump(exclude={"allow_private_urls"}) for door, spec in specs.items()}
    differences = {door: {k: v for k, v in spec.items() if v != said["cli"][k]} for door, spec in said.items()}
    assert not any(differences.values()), differences
    assert (specs["slack"].subject, specs["slack"].base_model) == (subject, model)

    line = understood_line(specs["chat"])
    assert line.startswith(f"fine-tune {model} on {subject!r}")
    assert http["understood"] == line == tuner.understood(python)
    assert line in chat_reply and line in slack_reply
    assert cli_line == f"# understood: {line}"
