"""Run settings: explicit > environment > config file > default."""

from pathlib import Path

import pytest

from agent.settings import Settings, resolve_settings


def test_precedence(tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    (home / "config.yaml").write_text("threads: 3\nchat_model: from-file\nembedding_model: /file/model\n")
    env = {"FTAGENT_HOME": str(home), "FTAGENT_CHAT_MODEL": "from-env"}
    settings = resolve_settings({"threads": 1}, env)
    assert settings.home == home
    assert settings.threads == 1  # explicit beats the file
    assert settings.chat_model == "from-env"  # environment beats the file
    assert settings.embedding_model == "/file/model"  # the file beats the default
    assert resolve_settings({}, {"FTAGENT_HOME": str(tmp_path / "empty")}).chat_model is None


def test_default_home_is_in_the_user_folder():
    assert resolve_settings({}, {}).home == Path("~/.ftagent").expanduser()


def test_chat_timeout_is_a_setting(tmp_path):
    import pytest
    from pydantic import ValidationError

    home = tmp_path / "home"
    home.mkdir()
    assert resolve_settings({}, {"FTAGENT_HOME": str(home)}).chat_timeout_s == 30.0
    (home / "config.yaml").write_text("chat_timeout_s: 12\n")
    assert resolve_settings({}, {"FTAGENT_HOME": str(home)}).chat_timeout_s == 12.0
    env = {"FTAGENT_HOME": str(home), "FTAGENT_CHAT_TIMEOUT": "4.5"}
    assert resolve_settings({}, env).chat_timeout_s == 4.5
    assert resolve_settings({"chat_timeout_s": 2}, env).chat_timeout_s == 2.0
    with pytest.raises(ValidationError, match="chat_timeout_s"):
        resolve_settings({}, {"FTAGENT_HOME": str(home), "FTAGENT_CHAT_TIMEOUT": "0"})


def test_precision_is_a_setting_that_a_job_can_override(tmp_path):
    import pytest
    from pydantic import ValidationError

    home = tmp_path / "home"
    home.mkdir()
    assert resolve_settings({}, {"FTAGENT_HOME": str(home)}).precision == "auto"
    (home / "config.yaml").write_text("precision: fp32\n")
    assert resolve_settings({}, {"FTAGENT_HOME": str(home)}).precision == "fp32"
    settings = resolve_settings({}, {"FTAGENT_HOME": str(home), "FTAGENT_PRECISION": "bf16"})
    assert settings.precision == "bf16"
    assert settings.precision_for("auto") == "bf16" and settings.precision_for("fp32") == "fp32"
    with pytest.raises(ValidationError, match="precision"):
        resolve_settings({}, {"FTAGENT_HOME": str(home), "FTAGENT_PRECISION": "fp16"})


def test_auto_precision_follows_the_hardware_and_explicit_ones_are_kept():
    import pytest

    from tools.hardware import Hardware, resolve_precision

    native = Hardware("cpu", True, 2, 8.0, "CPU with native bf16")
    plain = Hardware("cpu", False, 2, 8.0, "CPU without native bf16")
    assert [resolve_precision(p, h)[0] for p in ("auto", "fp32", "bf16") for h in (native, plain)] == [
        "bf16", "fp32", "fp32", "fp32", "bf16", "bf16"]
    assert "without native bf16" in resolve_precision("auto", plain)[1]
    with pytest.raises(ValueError, match="auto, fp32, bf16"):
        resolve_precision("fp16", native)


def test_an_unknown_key_in_the_config_file_is_refused_with_the_nearest_setting(tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    (home / "config.yaml").write_text("chat_modle: gpt-4o-mini\nthreads: 2\nno_such_thing: 1\n")
    with pytest.raises(ValueError) as refused:
        resolve_settings({"home": str(home)}, environ={})
    message = str(refused.value)
    assert str(home / "config.yaml") in message
    assert "unknown setting 'chat_modle' (did you mean 'chat_model'?)" in message
    assert "unknown setting 'no_such_thing'" in message


def test_an_unknown_explicit_setting_is_refused(tmp_path):
    with pytest.raises(ValueError, match="chat_modle"):
        Settings(home=tmp_path, chat_modle="gpt-4o-mini")


def test_the_cli_says_which_setting_is_unknown(tmp_path, monkeypatch, capsys):
    from agent.cli import EXIT_BAD_INPUT, main

    home = tmp_path / "home"
    home.mkdir()
    (home / "config.yaml").write_text("chat_modle: gpt-4o-mini\n")
    monkeypatch.delenv("FTAGENT_CONFIG", raising=False)
    assert main(["--home", str(home), "models"]) == EXIT_BAD_INPUT
    out = " ".join(capsys.readouterr().out.split())
    assert "bad setting" in out and "did you mean 'chat_model'?" in out


def _show(argv: list[str], env: dict[str, str], cwd: Path) -> dict[str, tuple[str, str]]:
    """`ftagent ... config show` in its own process: {setting: (value, origin)} from its lines."""
    import os
    import subprocess
    import sys

    repository = Path(__file__).resolve().parents[2]
    environ = {key: value for key, value in os.environ.items() if not key.startswith(("FTAGENT_", "MLFLOW_"))}
    environ |= {"PYTHONPATH": str(repository), **env}
    done = subprocess.run([sys.executable, "-m", "agent.cli", *argv, "config", "show"], cwd=cwd, env=environ,
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    rows = [line.split(": ", 1) for line in done.stdout.splitlines()]
    return {name: tuple(rest.split("  # ", 1)) for name, rest in rows}


def test_config_show_says_where_each_setting_came_from(tmp_path):
    """Through the real CLI: a flag, environment variables, the config file and defaults, each named."""
    home = tmp_path / "home"
    home.mkdir()
    (home / "config.yaml").write_text("chat_model: from-file\nnetwork: true\nthreads: 3\n")
    shown = _show(["--home", str(home), "--threads", "2"],
                  {"FTAGENT_NETWORK": "0", "FTAGENT_CHAT_API_KEY": "sk-secret"}, tmp_path)
    assert shown["home"] == (str(home), "CLI flag --home")
    assert shown["threads"] == ("2", "CLI flag --threads")  # the flag beats the file
    assert shown["network"] == ("false", "environment variable FTAGENT_NETWORK")  # the environment beats it
    assert shown["chat_model"] == ("from-file", f"config file {home / 'config.yaml'}")
    assert shown["chat_api_key"] == ("'***'", "environment variable FTAGENT_CHAT_API_KEY")
    assert shown["http_retries"] == ("3", "default") and shown["serving_ab_splits"] == ("{}", "default")
    assert set(shown) == set(Settings.model_fields)


def test_config_show_names_the_config_file_the_environment_chose(tmp_path):
    elsewhere = tmp_path / "team.yaml"
    elsewhere.write_text("tracking: mlflow\nserving_api_key: key-123\n")
    shown = _show([], {"FTAGENT_HOME": str(tmp_path / "home"), "FTAGENT_CONFIG": str(elsewhere)}, tmp_path)
    assert shown["home"] == (str(tmp_path / "home"), "environment variable FTAGENT_HOME")
    assert shown["tracking"] == ("mlflow", f"config file {elsewhere}")
    assert shown["serving_api_key"] == ("'***'", f"config file {elsewhere}")  # a secret is never printed


def test_a_settings_object_built_directly_reads_no_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("FTAGENT_CHAT_MODEL", "from-env")
    monkeypatch.setenv("HOME", str(tmp_path))
    settings = Settings(home=tmp_path / "home")
    assert settings.chat_model is None and settings.origins["chat_model"] == "default"
    assert resolve_settings({"home": str(tmp_path / "home")}).origins["chat_model"] == (
        "environment variable FTAGENT_CHAT_MODEL")


def test_the_settings_have_every_member_the_graph_reads(tmp_path):
    """graphs/context.RunSettings names what the nodes read; the doors' Settings must have all of it."""
    from graphs.context import RunSettings

    settings = Settings(home=tmp_path)
    members = {name for kind in RunSettings.__mro__ if kind is not object
               for name in [*getattr(kind, "__annotations__", {}), *vars(kind)] if not name.startswith("_")}
    assert members >= {"chat_model", "home", "database", "job_paths", "precision_for", "http_cache"}
    assert [name for name in sorted(members) if not hasattr(settings, name)] == []
