"""The whole graph, end to end, with a tiny model and real components (MiniLM, chromadb, SQLite)."""

import json
from pathlib import Path

import pytest
from tiny_job import GRAPH_JOB, run_job, tiny_job_options

from tools.serving.export import export_problems
from tools.stores.model_registry import ModelRegistry

DEMO = Path(__file__).resolve().parents[2] / "tools" / "eval_sets" / "demo_corpus"
OFF_TOPIC = {"sourdough-baking.md", "medieval-castle-architecture.md", "cricket-rules.txt"}


@pytest.fixture(scope="module")
def passing_job(tiny_model_dir, tmp_path_factory):
    home = tmp_path_factory.mktemp("home")
    options = tiny_job_options(tiny_model_dir, base=GRAPH_JOB,
                               gates={"min_nll_improvement": 0.0, "max_general_ppl_increase": 10.0},
                               merge=True)
    return home, run_job(home, "job-pass", options, listeners=(HEARD.append,))


HEARD: list[dict] = []  # what the passing job's listeners heard (progress ticks are never written)


def test_job_trains_evaluates_and_registers(passing_job):
    home, state = passing_job
    assert state["status"] == "succeeded"
    assert state["evaluation"].passed and len(state["rounds"]) == 1 and not state["remedies"]
    version = ModelRegistry(home / "ftagent.sqlite").get(state["model"].name)
    assert version.name.startswith("ft-tiny-model") and version.name.split("-v1-")[1].isdigit()
    assert Path(version.adapter_path, "adapter_config.json").exists()
    assert "quantum error correction" in Path(version.card_path).read_text()
    assert version.dataset_hash == state["dataset"].hash
    assert export_problems(Path(version.merged_path)) == []  # merge=True: a standalone folder, checked


def test_curator_drops_the_off_topic_documents(passing_job):
    _, state = passing_job
    dropped = {Path(d.title).name for d in state["curation"].documents_dropped}
    read = {Path(d["uri"]).name: d["title"] for d in state["documents"]}
    assert {read[name] for name in OFF_TOPIC} == dropped
    assert state["curation"].documents_kept == len(read) - len(OFF_TOPIC)


def test_dataset_is_chat_jsonl_split_by_document(passing_job):
    _, state = passing_job
    owners = {}
    for split, path in state["dataset"].paths.items():
        records = [json.loads(line) for line in Path(path).read_text().splitlines()]
        assert records, split
        for record in records:
            assert [m["role"] for m in record["messages"]] == ["system", "user", "assistant"]
            assert set(record["metadata"]) >= {"source", "chunk_id", "type", "quality_score"}
        owners[split] = {r["metadata"]["doc_id"] for r in records}
    assert not (owners["train"] & owners["test"]) and not (owners["train"] & owners["val"])


def test_events_record_every_phase(passing_job):
    home, _ = passing_job
    events = [json.loads(line) for line in (home / "jobs" / "job-pass" / "events.jsonl").read_text().splitlines()]
    phases = {e["phase"] for e in events if e["kind"] == "phase"}
    assert {"intake", "researcher", "curator", "generator", "trainer", "evaluator", "deployer"} <= phases
    assert any(e["kind"] == "step" for e in events)
    assert any(e["message"].startswith("grounding gate not judged: 2 generated answers") for e in events)
    assert (home / "jobs" / "job-pass" / "report.md").read_text().count("PASS") >= 2


def test_failing_gate_goes_through_the_critic_and_back(tiny_model_dir, tmp_path):
    options = tiny_job_options(tiny_model_dir, base=GRAPH_JOB, gates={"min_nll_improvement": 0.99}, max_rounds=1)
    state = run_job(tmp_path, "job-critic", options)
    assert [r.round for r in state["rounds"]] == [1, 2]
    assert len(state["remedies"]) == 1 and state["remedies"][0].route == "trainer"
    assert state["rounds"][1].config["epochs"] == state["rounds"][0].config["epochs"] * 2
    assert state["rounds"][1].steps == state["rounds"][0].steps * 2  # the step cap doubles too
    assert state["model"].status == "rejected" and not state["model"].gates_passed
    report = (tmp_path / "jobs" / "job-critic" / "report.md").read_text()
    assert "round 1" in report and "round 2" in report and "critic:" in report


def test_no_documents_stops_with_a_reason(tiny_model_dir, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    state = run_job(tmp_path, "job-empty", tiny_job_options(tiny_model_dir, empty, base=GRAPH_JOB))
    assert state["status"] == "failed" and "no documents" in state["outcome"]
    assert "--docs" in state["outcome"]


def test_bad_files_are_skipped_and_listed(tiny_model_dir, tmp_path):
    corpus = tmp_path / "docs"
    corpus.mkdir()
    for name in ("surface-code.md", "shor-code.md", "stabilizer-formalism.html", "threshold-theorem.pdf",
                 "logical-qubits-and-code-distance.txt"):
        (corpus / name).write_bytes((DEMO / name).read_bytes())
    corrupt = Path(__file__).resolve().parents[2] / "tools" / "eval_sets" / "corrupt"
    for name in ("broken.pdf", "empty.txt", "binary.md"):
        (corpus / name).write_bytes((corrupt / name).read_bytes())
    options = tiny_job_options(tiny_model_dir, corpus, base=GRAPH_JOB, gates={
        "min_train_examples": 4, "min_nll_improvement": 0.0, "max_general_ppl_increase": 10.0})
    state = run_job(tmp_path, "job-bad-files", options)
    # a file skipped when listed is named by its path, one skipped when read by "local:<path in the folder>"
    skipped = {Path(s["what"].removeprefix("local:")).name: s["reason"] for s in state["skipped"]}
    assert set(skipped) == {"broken.pdf", "empty.txt", "binary.md"}
    assert state["status"] == "succeeded" and len(state["documents"]) == 5
    report = (tmp_path / "jobs" / "job-bad-files" / "report.md").read_text()
    assert "broken.pdf" in report and "corrupt PDF" in report


def test_feedback_corrections_train_the_next_version(passing_job, tiny_model_dir):
    from tools.stores.feedback import FeedbackStore

    home, first = passing_job
    FeedbackStore(home / "ftagent.sqlite").add(first["model"].name, "What is the surface code?", "No idea.", -1,
                                               correction="The surface code is a topological stabilizer code.")
    options = tiny_job_options(tiny_model_dir, base=GRAPH_JOB,
                               gates={"min_nll_improvement": 0.0, "max_general_ppl_increase": 10.0})
    second = run_job(home, "job-next-version", options)
    assert second["training"].feedback_examples == 1
    assert second["model"].name.split("-v")[-1].startswith("2-")  # the family's next version
    events = (home / "jobs" / "job-next-version" / "events.jsonl").read_text()
    assert "adding 1 feedback corrections" in events


def test_listeners_hear_progress_of_the_long_tasks_which_is_never_written(passing_job):
    home, state = passing_job
    ticks = [e for e in HEARD if e["kind"] == "progress"]
    finals = {(e["phase"], e["data"]["task"]): e["data"] for e in ticks if e["data"]["done"] == e["data"]["total"]}
    assert set(finals) >= {("researcher", "documents from local"), ("curator", "embedding chunks"),
                           ("generator", "generating QA (extractive)"), ("evaluator", "evaluating tuned: answers"),
                           ("evaluator", "evaluating base: answers")}, sorted(finals)
    assert finals[("curator", "embedding chunks")]["total"] == state["curation"].chunks_in
    assert finals[("evaluator", "evaluating base: answers")]["total"] == 2 + state["spec"].evaluation.general_qa
    written = (home / "jobs" / "job-pass" / "events.jsonl").read_text()
    assert '"kind": "progress"' not in written and '"kind": "phase"' in written
