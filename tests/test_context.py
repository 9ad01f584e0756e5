"""Run settings: explicit > environment > config file > default."""

from pathlib import Path

from graphs.context import resolve_settings


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
