"""The CLI maps bad input to clear messages and non-zero exit codes (no stack traces)."""

from pathlib import Path

from agent.cli import EXIT_BAD_INPUT, EXIT_ENVIRONMENT, EXIT_JOB_FAILED, EXIT_NOT_FOUND, main

DEMO = Path(__file__).resolve().parents[2] / "tools" / "eval_sets" / "demo_corpus"


def test_sentence_without_subject(home, capsys):
    assert main(["run", "fine-tune SmolLM2", "--docs", str(DEMO)]) == EXIT_BAD_INPUT
    assert "no subject" in capsys.readouterr().out


def test_missing_docs_folder(home, tmp_path, capsys):
    assert main(["run", "fine-tune SmolLM2 on soil", "--docs", str(tmp_path / "none")]) == EXIT_BAD_INPUT
    assert "does not exist" in capsys.readouterr().out


def test_unknown_job_and_model(home, capsys):
    assert main(["status", "no-such-job"]) == EXIT_NOT_FOUND
    assert main(["show", "no-such-model"]) == EXIT_NOT_FOUND
    assert "no model named 'no-such-model'" in capsys.readouterr().out


def test_home_that_cannot_be_written(tmp_path, capsys):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    assert main(["--home", str(blocker / "home"), "models"]) == EXIT_ENVIRONMENT
    assert "cannot read or write files" in capsys.readouterr().out


def test_empty_docs_folder_ends_with_a_reason(home, tmp_path, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["run", "fine-tune SmolLM2 on soil science", "--docs", str(empty)]) == EXIT_JOB_FAILED
    out = capsys.readouterr().out
    assert "no documents" in out and "--docs" in out


def test_base_model_that_cannot_be_loaded(home, tmp_path, capsys):
    broken = tmp_path / "broken-model"
    broken.mkdir()
    (broken / "config.json").write_text('{"model_type": "not-a-real-architecture"}')
    code = main(["run", "fine-tune on quantum error correction", "--docs", str(DEMO), "--model", str(broken),
                 "--max-steps", "1"])
    assert code == EXIT_BAD_INPUT  # refused before the job is queued, not after research
    out = " ".join(capsys.readouterr().out.split())
    assert "has no config transformers can read" in out and not (home / "jobs").exists()
