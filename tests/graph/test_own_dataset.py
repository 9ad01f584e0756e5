"""The user's own dataset: formats, validation (bad rows by line number, empty, one row) before any work,
splitting, and a tiny job that trains, evaluates and registers on it with research and generation skipped."""

import json
from pathlib import Path

import pytest
from langgraph.checkpoint.memory import InMemorySaver
from own_dataset import parts_rows, write_rows

from agent.settings import Settings
from graphs.checkpointer import StrictSerializer
from graphs.context import JobContext
from graphs.graph import build_graph
from graphs.spec import RequestError, build_spec
from tools.data.user_dataset import DatasetError, read_user_dataset
from tools.hub_cards import split_parse
from tools.stores.model_registry import ModelRegistry

SENTENCE = "fine-tune a model on our parts list"


@pytest.mark.parametrize("fmt", ["chat", "alpaca", "sharegpt"])
def test_each_format_becomes_chat_records_split_by_row(tmp_path, fmt):
    dataset = read_user_dataset(write_rows(tmp_path / "own.jsonl", parts_rows(fmt)))
    assert dataset.format == fmt and dataset.rows == 28 and not dataset.had_splits
    assert {k: len(v) for k, v in dataset.splits.items()} == {"train": 21, "val": 3, "test": 4}
    record = dataset.splits["train"][0]
    assert [m["role"] for m in record["messages"]] == ["user", "assistant"]
    assert record["messages"][-1]["content"].startswith("The ")


def test_a_bad_row_is_named_with_its_line_number_and_what_was_expected(tmp_path):
    path = tmp_path / "own.jsonl"
    rows = parts_rows("chat", 5)
    lines = [json.dumps(r) for r in rows[:3]] + ["", json.dumps({"prompt": "a", "completion": "b"})]
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(DatasetError, match=r"own\.jsonl:5: keys \['completion', 'prompt'\] match no known "
                                           r"format; expected .*Alpaca"):
        read_user_dataset(path)
    path.write_text(json.dumps(rows[0]) + "\n{not json\n")
    with pytest.raises(DatasetError, match=r"own\.jsonl:2: not JSON"):
        read_user_dataset(path)
    path.write_text(json.dumps({"messages": [{"role": "user", "content": "hi?"}]}) + "\n")
    with pytest.raises(DatasetError, match=r":1: the last message must be the assistant's answer"):
        read_user_dataset(path)


def test_empty_and_one_row_datasets_are_refused(tmp_path):
    with pytest.raises(DatasetError, match="is empty"):
        read_user_dataset(write_rows(tmp_path / "empty.jsonl", []))
    with pytest.raises(DatasetError, match="has one row: at least two"):
        read_user_dataset(write_rows(tmp_path / "one.jsonl", parts_rows("alpaca", 1)))
    with pytest.raises(DatasetError, match="does not exist"):
        read_user_dataset(tmp_path / "missing.jsonl")


def test_a_folder_saved_by_datasets_keeps_its_splits(tmp_path):
    from datasets import Dataset, DatasetDict

    rows = parts_rows("chat")
    DatasetDict({"train": Dataset.from_list(rows[:20]), "validation": Dataset.from_list(rows[20:24]),
                 "test": Dataset.from_list(rows[24:])}).save_to_disk(str(tmp_path / "saved"))
    dataset = read_user_dataset(tmp_path / "saved")
    assert dataset.had_splits and {k: len(v) for k, v in dataset.splits.items()} == {"train": 20, "val": 4,
                                                                                      "test": 4}
    Dataset.from_list(parts_rows("sharegpt")).save_to_disk(str(tmp_path / "single"))
    single = read_user_dataset(tmp_path / "single")
    assert single.format == "sharegpt" and not single.had_splits and len(single.splits["test"]) == 4
    DatasetDict({"train": Dataset.from_list(rows[:20]), "holdout": Dataset.from_list(rows[20:])}).save_to_disk(
        str(tmp_path / "odd"))
    with pytest.raises(DatasetError, match="split 'holdout' is not one of train, validation"):
        read_user_dataset(tmp_path / "odd")


def test_intake_refuses_a_bad_dataset_before_any_work(tmp_path):
    with pytest.raises(RequestError, match=r"one\.jsonl has one row"):
        build_spec(SENTENCE, {"dataset": str(write_rows(tmp_path / "one.jsonl", parts_rows("chat", 1)))})
    few = write_rows(tmp_path / "few.jsonl", parts_rows("chat", 10))
    with pytest.raises(RequestError, match=r"leaves 7 training rows of 10 and the gate needs 16.*"
                                           r"gates\.min_train_examples=7"):
        build_spec(SENTENCE, {"dataset": str(few)})
    assert build_spec(SENTENCE, {"dataset": str(few), "gates": {"min_train_examples": 7}}).dataset == str(few)


@pytest.fixture(scope="module")
def own_job(tiny_model_dir, tmp_path_factory):
    folder = tmp_path_factory.mktemp("own")
    home = folder / "home"
    options = {"base_model": str(tiny_model_dir), "dataset": str(write_rows(folder / "own.jsonl", parts_rows())),
               "max_rounds": 0, "gates": {"min_nll_improvement": 0.0, "max_general_ppl_increase": 10.0},
               "training": {"max_steps": 4, "precision": "fp32", "checkpoint_every": 2},
               "evaluation": {"generate_limit": 2, "max_new_tokens": 6, "general_texts": 3, "general_qa": 1}}
    graph = build_graph(InMemorySaver(serde=StrictSerializer()))
    state = graph.invoke({"job_id": "own-job", "request": SENTENCE, "options": options},
                         {"configurable": {"thread_id": "own-job"}, "recursion_limit": 60},
                         context=JobContext(Settings(home=home)))
    return home, state


def test_own_dataset_trains_evaluates_and_registers_without_research(own_job):
    home, state = own_job
    assert state["status"] == "succeeded" and not state.get("documents") and not state.get("curation")
    assert state["dataset"].counts == {"train": 21, "val": 3, "test": 4}
    assert state["training"].steps == 4 and state["evaluation"].base["answer_nll"] > 0
    version = ModelRegistry(home / "ftagent.sqlite").get(state["model"].name)
    assert version.dataset_hash == state["dataset"].hash
    phases = [json.loads(line)["phase"] for line in (home / "jobs/own-job/events.jsonl").read_text().splitlines()]
    assert "researcher" not in phases and "curator" not in phases and "generator" not in phases
    report = (home / "jobs/own-job/report.md").read_text()
    assert "research, curation and generation skipped: trained on your dataset" in report
    assert "own dataset own.jsonl (alpaca, 28 rows)" in Path(version.card_path).read_text()


def test_own_dataset_folder_has_a_card_with_configs(own_job):
    _, state = own_job
    train = json.loads(Path(state["dataset"].paths["train"]).read_text().splitlines()[0])
    assert train["messages"][0]["role"] == "system"  # the job's system prompt, as `ftagent ask` uses it
    metadata, body = split_parse(Path(state["dataset"].card).read_text())
    assert metadata["configs"][0]["config_name"] == "chat" and "split here by row" in body


def test_datasets_reads_the_job_dataset_folder_with_its_splits(own_job):
    from datasets import load_dataset

    _, state = own_job
    loaded = load_dataset(str(Path(state["dataset"].card).parent))
    assert {name: len(part) for name, part in loaded.items()} == {"train": 21, "validation": 3, "test": 4}


def test_the_critic_never_regenerates_an_own_dataset(tmp_path):
    from graphs.critic import remedy_for_gates, remedy_menu

    spec = build_spec(SENTENCE, {"dataset": str(write_rows(tmp_path / "own.jsonl", parts_rows()))})
    weak = ["answer_rouge_l"]
    assert remedy_for_gates(spec, weak, []).route == "trainer"
    assert "stricter_generation" not in remedy_menu(spec, 21)


def test_cli_refuses_a_bad_row_before_any_work(home, tmp_path, capsys):
    from agent.cli import EXIT_BAD_INPUT, main

    rows = parts_rows("sharegpt")
    rows[6] = {"conversations": [{"from": "human", "value": "which part?"}, {"from": "robot", "value": "P-1"}]}
    path = write_rows(tmp_path / "own.jsonl", rows)
    assert main(["run", SENTENCE, "--dataset", str(path)]) == EXIT_BAD_INPUT
    out = "".join(capsys.readouterr().out.split())  # rich wraps long lines
    assert "own.jsonl:7:turn2needs" in out and not (home / "jobs").exists()


def test_training_and_evaluation_are_in_tensorboard(own_job):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    home, state = own_job
    run = EventAccumulator(str(home / "jobs/own-job/tensorboard/round-1"))
    run.Reload()
    tags = set(run.Tags()["scalars"])
    assert {"train/loss", "train/learning_rate", "train/grad_norm", "train/tokens_per_second"} <= tags
    assert [e.step for e in run.Scalars("train/loss")] == [1, 2, 3, 4]
    assert run.Scalars("eval/answer_nll/tuned")[0].value == pytest.approx(state["evaluation"].tuned["answer_nll"])
    assert "eval/answer_nll/base" in tags and "config/text_summary" in run.Tags()["tensors"]


def test_http_options_dataset_is_validated_before_queueing(home, tmp_path):
    from fastapi.testclient import TestClient

    from agent.api import PREFIX, create_app
    from agent.service import JobService
    from agent.settings import resolve_settings

    service = JobService(resolve_settings({"home": str(home), "document_roots": [str(tmp_path)]}))
    client = TestClient(create_app(service, "token-1", poll_seconds=0.05))
    path = write_rows(tmp_path / "own.jsonl", [*parts_rows("alpaca", 3), {"instruction": "Which?", "output": ""}])
    answer = client.post(f"{PREFIX}/jobs", json={"request": SENTENCE, "options": {"dataset": str(path)}},
                         headers={"Authorization": "Bearer token-1"})
    assert answer.status_code == 400 and "own.jsonl:4: Alpaca rows need" in answer.json()["error"]
    assert service.list_jobs() == []
