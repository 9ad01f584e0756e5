"""The rest of the CLI: --version, help with a description and an example for every subcommand, --json,
submit, logs, feedback, config show|init, and the Slack bot's missing tokens."""

import json

import pytest
from own_dataset import parts_rows, write_rows

from agent.cli import EXIT_BAD_INPUT, EXIT_ENVIRONMENT, EXIT_NOT_FOUND, _parser, main

SENTENCE = "fine-tune a model on our parts list"


def test_version(capsys):
    with pytest.raises(SystemExit) as done:
        main(["--version"])
    assert done.value.code == 0 and capsys.readouterr().out.startswith("ftagent ")


def test_every_subcommand_has_a_description_an_example_and_option_help():
    commands = next(a for a in _parser()._actions if a.dest == "command")
    for name, parser in commands.choices.items():
        text = parser.format_help()
        assert parser.description and "example:\n  ftagent" in text.replace("SLACK_BOT_TOKEN=xoxb-... "
                                                                           "SLACK_SIGNING_SECRET=... ", ""), name
        assert all(action.help for action in parser._actions), (name, [a.dest for a in parser._actions
                                                                     if not a.help])
    assert "(default: 8000)" in commands.choices["serve"].format_help()


def test_submit_queues_and_logs_and_status_show_it(home, tmp_path, capsys, tiny_model_dir):
    dataset = write_rows(tmp_path / "own.jsonl", parts_rows())
    assert main(["submit", SENTENCE, "--dataset", str(dataset), "--model", str(tiny_model_dir)]) == 0
    job_id = capsys.readouterr().out.strip()
    assert main(["status", job_id, "--json"]) == 0
    status = json.loads(capsys.readouterr().out)
    assert status["job_id"] == job_id and status["status"] == "queued"
    assert main(["status", "--json"]) == 0 and json.loads(capsys.readouterr().out)[0]["job_id"] == job_id
    from agent.service import JobService
    from agent.settings import resolve_settings

    JobService(resolve_settings({})).cancel(job_id)
    assert main(["logs", job_id, "--follow"]) == 0  # ends: the job is cancelled
    assert "cancelled before it started" in capsys.readouterr().out
    assert main(["logs", job_id, "--json"]) == 0
    assert json.loads(capsys.readouterr().out.splitlines()[0])["kind"] == "cancelled"
    assert main(["models", "--json"]) == 0 and json.loads(capsys.readouterr().out) == []


def test_feedback_needs_a_registered_model(home, capsys):
    assert main(["feedback", "no-such-model", "--question", "q?", "--answer", "a", "--rating", "1"]) == EXIT_NOT_FOUND
    with pytest.raises(SystemExit):
        main(["feedback", "m", "--question", "q?", "--answer", "a", "--rating", "5"])


def test_config_show_hides_secrets_and_init_writes_once(home, monkeypatch, capsys):
    monkeypatch.setenv("FTAGENT_CHAT_API_KEY", "sk-secret")
    assert main(["config", "show"]) == 0
    out = capsys.readouterr().out
    assert "chat_api_key: '***'" in out and "sk-secret" not in out and "hub_downloads: false" in out
    assert main(["config", "init"]) == 0 and (home / "config.yaml").exists()
    assert "# network: true" in (home / "config.yaml").read_text()
    assert main(["config", "init"]) == EXIT_BAD_INPUT and "exists" in capsys.readouterr().out


def test_slack_without_tokens_says_which_are_missing(home, monkeypatch, capsys):
    for name in ("SLACK_BOT_TOKEN", "SLACK_SIGNING_SECRET", "SLACK_APP_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("SLACK_BOT_TOKEN", "xoxb-1")
    assert main(["slack", "--socket"]) == EXIT_ENVIRONMENT
    out = " ".join(capsys.readouterr().out.split())
    assert "SLACK_SIGNING_SECRET" in out and "SLACK_APP_TOKEN" in out and "SLACK_BOT_TOKEN (" not in out


TOKEN_VARIABLES = {"FTAGENT_API_TOKEN": "api-secret", "SLACK_BOT_TOKEN": "xoxb-secret",
                   "SLACK_SIGNING_SECRET": "signing-secret", "SLACK_APP_TOKEN": "xapp-secret"}


def test_the_api_and_slack_tokens_are_settings_shown_as_stars_with_their_origin(home, monkeypatch, capsys):
    for name, value in TOKEN_VARIABLES.items():
        monkeypatch.setenv(name, value)
    assert main(["config", "show"]) == 0
    shown = {line.split(":")[0]: line for line in capsys.readouterr().out.splitlines()}
    for setting, variable in (("api_token", "FTAGENT_API_TOKEN"), ("slack_bot_token", "SLACK_BOT_TOKEN"),
                              ("slack_signing_secret", "SLACK_SIGNING_SECRET"),
                              ("slack_app_token", "SLACK_APP_TOKEN")):
        assert shown[setting] == f"{setting}: '***'  # environment variable {variable}"
    assert not any(value in line for value in TOKEN_VARIABLES.values() for line in shown.values())
    assert main(["config", "init"]) == 0
    assert "secret" not in (home / "config.yaml").read_text()  # never written into the file either


def test_the_api_token_comes_from_the_flag_the_setting_or_the_home_file(home, monkeypatch):
    from agent.api import resolve_token
    from agent.settings import resolve_settings

    monkeypatch.delenv("FTAGENT_API_TOKEN", raising=False)
    generated = resolve_token(resolve_settings())
    assert len(generated) > 30 and (home / "api_token").read_text().strip() == generated
    home.joinpath("config.yaml").write_text("api_token: from-the-file\n")
    assert resolve_token(resolve_settings()) == "from-the-file"
    monkeypatch.setenv("FTAGENT_API_TOKEN", "from-the-environment")
    assert resolve_token(resolve_settings()) == "from-the-environment"
    assert resolve_token(resolve_settings(), "from-the-token-file") == "from-the-token-file"


def test_slack_tokens_come_from_the_settings_and_the_missing_are_named(home, monkeypatch):
    from agent.settings import resolve_settings
    from agent.slack_bot import SlackTokensMissing, slack_tokens

    for name in TOKEN_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    home.mkdir(parents=True)
    home.joinpath("config.yaml").write_text("slack_signing_secret: s3\nslack_bot_token: xoxb-file\n")
    monkeypatch.setenv("SLACK_BOT_TOKEN", "xoxb-env")
    settings = resolve_settings()
    tokens = slack_tokens(settings, socket=False)
    assert (tokens.signing_secret, tokens.bot_token, tokens.app_token) == ("s3", "xoxb-env", None)
    assert settings.origins["slack_signing_secret"].startswith("config file ")
    with pytest.raises(SlackTokensMissing, match=r"SLACK_APP_TOKEN \(Basic Information > App-Level") as missing:
        slack_tokens(settings, socket=True)
    assert "SLACK_BOT_TOKEN" not in str(missing.value) and "SLACK_SIGNING_SECRET" not in str(missing.value)
