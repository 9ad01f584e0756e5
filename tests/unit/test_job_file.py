"""Job files, --set and --dry-run: the resolved spec with each value's origin; bad keys and types refused
before any work, naming the key."""

import pytest
import yaml
from own_dataset import parts_rows, write_rows

from agent.cli import EXIT_BAD_INPUT, main
from graphs.job_file import JobFileError, parse_set, resolve_job, spec_yaml

SENTENCE = "fine-tune SmolLM2 on our parts list"


def write_job(folder, text):
    path = folder / "job.yaml"
    path.write_text(text)
    return path


def test_job_file_set_and_sentence_resolve_with_their_origins(tmp_path):
    write_rows(tmp_path / "own.jsonl", parts_rows())
    job_file = write_job(tmp_path, "request: fine-tune SmolLM2 on our parts list\ndataset: own.jsonl\n"
                         "training:\n  epochs: 3\n  lora_r: 8\ngates:\n  min_rouge_l: 0.1\n")
    job = resolve_job(None, job_file, ["training.epochs=5", "generation.generator=llm",
                                       "research.extra_queries=bolts,nuts"], {"max_rounds": 1})
    spec = job.spec
    assert spec.dataset == str(tmp_path / "own.jsonl")  # relative to the job file's folder
    assert (spec.training.epochs, spec.training.lora_r, spec.generation.generator) == (5.0, 8, "llm")
    assert spec.research.extra_queries == ["bolts", "nuts"] and spec.max_rounds == 1
    assert job.origins["training.epochs"] == "--set" and job.origins["training.lora_r"] == "config"
    assert job.origins["subject"] == "sentence" and job.origins["base_model"] == "sentence"
    assert job.origins["max_rounds"] == "option" and job.origins["training.seed"] == "default"
    printed = spec_yaml(job)
    assert "  epochs: 5.0  # --set" in printed and "  lora_r: 8  # config" in printed
    assert yaml.safe_load(printed) == {"request": SENTENCE, **spec.model_dump()}


@pytest.mark.parametrize(("item", "message"), [
    ("training.epoch=3", "unknown key 'training.epoch' (did you mean 'training.epochs'?)"),
    ("trainin.epochs=3", "unknown key 'trainin' (did you mean 'training'?)"),
    ("training.epochs=many", "--set training.epochs=many: Input should be a valid number"),
    ("training.lora_r=0", "--set training.lora_r=0: Input should be greater than or equal to 1"),
    ("generation.generator=gpt", "--set generation.generator=gpt: String should match pattern"),
    ("merge=perhaps", "--set merge=perhaps: Input should be a valid boolean"),
    ("training=3", "training is a section"),
    ("max_rounds.x=1", "max_rounds is a single value"),
    ("epochs", "write section.key=value"),
])
def test_bad_set_items_are_refused_naming_the_key(item, message):
    with pytest.raises(JobFileError) as error:
        parse_set(item)
    assert message in str(error.value)


def test_set_types_follow_the_spec():
    assert parse_set("language=no") == (["language"], "no")  # text stays text (YAML would say False)
    assert parse_set("curation.language=null") == (["curation", "language"], None)
    assert parse_set("training.learning_rate=1e-4") == (["training", "learning_rate"], 1e-4)
    assert parse_set("training.max_steps=12")[1] == 12 and parse_set("merge=true")[1] is True


def test_bad_job_files_are_refused(tmp_path):
    with pytest.raises(JobFileError, match=r"job\.yaml: unknown key 'training\.lora_rank' \(did you mean"):
        resolve_job(None, write_job(tmp_path, f"request: {SENTENCE}\ntraining:\n  lora_rank: 8\n"))
    with pytest.raises(JobFileError, match="not valid YAML"):
        resolve_job(SENTENCE, write_job(tmp_path, "training: [1, 2\n"))
    with pytest.raises(JobFileError, match="must be a mapping"):
        resolve_job(SENTENCE, write_job(tmp_path, "- a\n- b\n"))
    with pytest.raises(JobFileError, match="no request"):
        resolve_job(None, write_job(tmp_path, "max_rounds: 1\n"))
    with pytest.raises(JobFileError, match="does not exist"):
        resolve_job(SENTENCE, tmp_path / "missing.yaml")


def test_cli_dry_run_prints_the_spec_and_runs_nothing(home, tmp_path, capsys):
    write_rows(tmp_path / "own.jsonl", parts_rows())
    job_file = write_job(tmp_path, f"request: {SENTENCE}\ndataset: own.jsonl\n")
    assert main(["run", "--config", str(job_file), "--set", "training.epochs=4", "--epochs", "3",
                 "--dry-run"]) == 0
    out = capsys.readouterr().out
    printed = yaml.safe_load(out)
    assert printed["training"]["epochs"] == 4.0 and printed["dataset"] == str(tmp_path / "own.jsonl")
    assert "# --set" in out and "# config" in out and not (home / "jobs").exists()
    assert main(["run", SENTENCE, "--set", "training.warmup=0.1", "--dry-run"]) == EXIT_BAD_INPUT
    assert "unknown key 'training.warmup'" in capsys.readouterr().out
