"""Evaluation: metrics incl. format compliance, QA sets and replay, plots, `ftagent eval`, the HTTP
evaluation endpoint, and the critic's grounding / general-regression remedies."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from job_results import curation_summary, dataset_summary, training_summary
from langgraph.runtime import Runtime

from agent.api import PREFIX, create_app
from agent.cli import EXIT_BAD_INPUT, EXIT_NOT_FOUND, main
from agent.service import JobService
from agent.settings import Settings, resolve_settings
from graphs.context import JobContext
from graphs.critic import remedy_for_gates
from graphs.gates import check_gates
from graphs.nodes.evaluator import evaluate_model
from graphs.reports import job_report
from graphs.spec import Gates, JobSpec
from tools.data.chunking import Chunk
from tools.evaluation.metrics import (
    exact_match,
    format_compliance,
    format_problems,
    rouge_l,
    token_f1,
)
from tools.evaluation.plots import write_plots
from tools.evaluation.scoring import QASetError, general_qa, mix_replay, qa_records, read_qa_set
from tools.stores.model_registry import ModelRegistry, ModelVersion
from tools.stores.sql_table import now_iso
from tools.stores.vector_store import ChunkStore

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
TOKEN = "test-token"
SPEC = JobSpec(subject="quantum error correction")
FAST = ["--generate", "2", "--max-new-tokens", "4"]
QA = [{"question": "What does a stabilizer code measure?", "answer": "It measures stabilizer operators."},
      {"question": "What is a logical qubit?", "answer": "A qubit encoded across many physical qubits."},
      {"messages": [{"role": "user", "content": "What is a syndrome?"},
                    {"role": "assistant", "content": "The outcome of stabilizer measurements."}]}]


@pytest.mark.parametrize(("answer", "problems"), [
    ("Paris is the capital of France.", []),
    ("", ["empty"]),
    ("   ", ["empty"]),
    ("Paris is the capital of", ["does not end cleanly"]),
    ("Paris.<|im_end|>", ["template tokens leaked: <|im_end|>"]),
    ("Paris. [INST] and more.", ["template tokens leaked: [INST]"]),
    ("Paris.\nuser: and what about Rome?", ["role marker leaked"]),
    ("Paris.\nassistant\nIt is Paris.", ["role marker leaked"]),
    ("word " * 200 + "end.", ["longer than 150 words"]),
])
def test_format_problems(answer: str, problems: list[str]) -> None:
    assert format_problems(answer) == problems
    assert format_compliance(answer) == float(not problems)


def test_answer_metrics() -> None:
    assert token_f1("the cat sat", "the cat sat") == 1.0 and token_f1("dog", "cat") == 0.0
    assert 0 < token_f1("the cat", "the cat sat") < 1
    assert rouge_l("stabilizers are measured", "stabilizers are measured") == pytest.approx(1.0)
    assert exact_match("The Cat.", "the cat") == 1.0 and exact_match("cat", "dog") == 0.0
    assert format_compliance("Short.", max_words=1) == 1.0 and format_compliance("Two words.", max_words=1) == 0.0


def test_qa_sets_read_both_formats_and_name_bad_lines(tmp_path: Path) -> None:
    path = tmp_path / "set.jsonl"
    path.write_text("\n".join(json.dumps(row) for row in QA) + "\n\n")
    records = read_qa_set(path, "SYSTEM")
    assert [r["messages"][0]["content"] for r in records[:2]] == ["SYSTEM", "SYSTEM"]
    assert records[2]["messages"][-1]["content"] == "The outcome of stabilizer measurements."
    assert len(read_qa_set(path, "S", limit=2)) == 2
    path.write_text(json.dumps(QA[0]) + "\n{broken\n")
    with pytest.raises(QASetError, match=r"set.jsonl:2: not JSON"):
        read_qa_set(path, "S")
    with pytest.raises(QASetError, match="example 1"):
        qa_records([{"question": "q"}], "S")
    with pytest.raises(QASetError, match="no such file"):
        read_qa_set(tmp_path / "missing.jsonl", "S")


def test_replay_mixes_general_examples_disjoint_from_the_evaluated_ones() -> None:
    evaluated, replayed = general_qa("S", 100), general_qa("S", 100, replay=True)
    assert evaluated and replayed
    assert not {r["messages"][1]["content"] for r in evaluated} & {r["messages"][1]["content"] for r in replayed}
    train = [{"messages": [{"role": "user", "content": f"q{i}"}, {"role": "assistant", "content": "a."}]}
             for i in range(20)]
    mixed = mix_replay(train, replayed, 0.25, seed=1)
    assert len(mixed) == 25 and sum(1 for r in mixed if r.get("metadata", {}).get("replay")) == 5
    assert mix_replay(train, replayed, 0.0) == train


def test_plots_are_valid_pngs(tmp_path: Path) -> None:
    base = {"answer_nll": 2.0, "rouge_l": 0.2, "format_compliance": 0.5, "general_perplexity": 20.0}
    tuned = {"answer_nll": 1.5, "rouge_l": 0.4, "format_compliance": 1.0, "general_perplexity": 21.0}
    rows = [{"base_rouge_l": i / 10, "tuned_rouge_l": min(1.0, i / 8)} for i in range(10)]
    plots = write_plots(tmp_path, "eval", base, tuned, rows)
    assert [p.name for p in plots] == ["eval-metrics.png", "eval-rouge.png"]
    for plot in plots:
        assert plot.read_bytes()[:8] == PNG_SIGNATURE and plot.stat().st_size > 2000
    assert [p.name for p in write_plots(tmp_path, "base-only", base, None, [{"base_rouge_l": 0.1}])] == [
        "base-only-metrics.png"]


# -- gates and critic table ---------------------------------------------------------------------

HALF_RATE = SPEC.training.learning_rate / 2  # the regression remedy halves the job's learning rate


def _spec(**sections) -> JobSpec:
    return SPEC.model_copy(update={k: getattr(SPEC, k).model_copy(update=v) for k, v in sections.items()})


@pytest.mark.parametrize(("spec", "failed", "route", "expected"), [
    (SPEC, ["general_perplexity"], "trainer", {"learning_rate": HALF_RATE, "replay_general": 0.1}),
    (_spec(training={"replay_general": 0.1}), ["general_perplexity"], "trainer",
     {"learning_rate": HALF_RATE, "lora_r": SPEC.training.lora_r // 2, "replay_general": 0.2}),
    (_spec(training={"replay_general": 0.3}), ["general_perplexity", "answer_rouge_l"], "trainer",
     {"learning_rate": HALF_RATE, "lora_r": SPEC.training.lora_r // 2, "replay_general": 0.3}),
    (SPEC, ["answer_rouge_l"], "generator", {"min_quality": 0.7, "keep_quality": 0.85, "min_lexical_support": 0.7,
                                             "min_semantic_support": 0.55, "max_cloze_share": 0.0,
                                             "max_yes_no_share": 0.0}),
    (_spec(generation={"min_quality": 0.95, "min_lexical_support": 0.95}), ["answer_rouge_l"], "trainer",
     {"epochs": 2 * SPEC.training.epochs}),
    (SPEC, ["answer_nll", "answer_rouge_l"], "trainer", {"epochs": 2 * SPEC.training.epochs}),
])
def test_critic_remedies_for_regression_and_weak_grounding(spec, failed, route, expected) -> None:
    remedy = remedy_for_gates(spec, failed, [])
    assert remedy.route == route
    assert {k: pytest.approx(v) for k, v in remedy.changes.items()} == expected


def _scores(rouge: float | None, generated: int, nll: float = 2.0) -> dict:
    return {"answer_nll": nll, "rouge_l": rouge, "generated": generated}


@pytest.mark.parametrize(("base", "tuned", "passed"), [
    (_scores(0.355, 20), _scores(0.554, 20, 1.5), True),  # the demo job (SmolLM2 on the demo corpus)
    (_scores(0.491, 15), _scores(0.642, 15, 1.5), True),  # the PubMedQA job
    (_scores(0.355, 20), _scores(0.31, 20, 1.5), True),   # 0.045 below base: within the margin
    (_scores(0.355, 20), _scores(0.30, 20, 1.5), False),  # 0.055 below base
    (_scores(0.355, 20), _scores(0.0, 20, 1.5), False),   # answers empty or unrelated
])
def test_grounding_gate_is_on_by_default_relative_to_base(base, tuned, passed) -> None:
    gate = check_gates(base, tuned, Gates())[-1]
    assert gate["name"] == "answer_rouge_l" and gate["passed"] is passed
    assert gate["threshold"] == pytest.approx(base["rouge_l"] - 0.05)
    assert f"base {base['rouge_l']:.3f}" in gate["detail"]


@pytest.mark.parametrize(("base", "tuned"), [
    (_scores(None, 0), _scores(None, 0, 1.5)),  # nothing generated (generate_limit 0)
    (_scores(0.5, 2), _scores(0.0, 2, 1.5)),    # two answers: too few to judge
])
def test_grounding_gate_is_not_judged_without_enough_answers(base, tuned) -> None:
    assert [g["name"] for g in check_gates(base, tuned, Gates())] == ["answer_nll"]
    assert [g["name"] for g in check_gates(base, tuned, Gates(min_rouge_l=0.9))] == ["answer_nll"]


def test_grounding_gate_takes_an_absolute_floor_and_can_be_loosened() -> None:
    base, tuned = _scores(0.355, 20), _scores(0.554, 20, 1.5)
    floor = check_gates(base, tuned, Gates(min_rouge_l=0.6))[-1]
    assert not floor["passed"] and floor["threshold"] == 0.6 and "at least 0.60" in floor["detail"]
    worse = _scores(0.1, 20, 1.5)
    assert not check_gates(base, worse, Gates())[-1]["passed"]
    assert check_gates(base, worse, Gates(max_rouge_l_drop=1.0))[-1]["passed"]
    assert check_gates(_scores(0.5, 3), _scores(0.0, 3, 1.5), Gates(min_rouge_l_answers=3))[-1]["passed"] is False


# -- ftagent eval and the HTTP endpoint on a tiny model + adapter ------------------------------------

@pytest.fixture(scope="module")
def tiny_adapter(tiny_model_dir: Path, tmp_path_factory) -> Path:
    """A LoRA adapter with random (non-zero) weights on the tiny model, so tuned differs from base."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(1)
    model = AutoModelForCausalLM.from_pretrained(str(tiny_model_dir))
    config = LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], init_lora_weights=False)
    folder = tmp_path_factory.mktemp("adapter")
    get_peft_model(model, config).save_pretrained(str(folder))
    return folder


@pytest.fixture()
def qa_file(tmp_path: Path) -> Path:
    path = tmp_path / "qa.jsonl"
    path.write_text("\n".join(json.dumps(row) for row in QA) + "\n")
    return path


def _run(capsys, *argv: str) -> tuple[int, str]:
    code = main(list(argv))
    return code, " ".join(capsys.readouterr().out.split())


def test_cli_eval_on_an_adapter_folder_prints_a_table_and_writes_the_report(
        home: Path, tiny_adapter: Path, qa_file: Path, capsys) -> None:
    code, out = _run(capsys, "eval", str(tiny_adapter), "--set", str(qa_file), "--limit", "2", *FAST)
    assert code == 0, out
    assert "answer NLL" in out and "format compliance" in out and "general QA token F1" in out
    assert "PASS answer_nll" in out or "FAIL answer_nll" in out
    reports = list((home / "evaluations").glob("*/report.json"))
    assert len(reports) == 1
    report = json.loads(reports[0].read_text())
    assert report["base"]["examples"] == 2 and report["tuned"]["generated"] == 2
    assert report["base"]["answer_nll"] != report["tuned"]["answer_nll"]
    assert len(report["per_example"]) == 2 and {"tuned_format", "base_format"} <= set(report["per_example"][0])
    assert report["judge"] == {"status": "absent", "reason": "no chat model configured", "judged": 0}
    assert not any(key.startswith("judge_") for key in report["per_example"][0])
    markdown = (reports[0].parent / "report.md").read_text()
    assert "No judge: no chat model configured." in markdown and "judge (correctness" not in markdown
    assert "![eval-metrics](eval-metrics.png)" in markdown and "![eval-rouge](eval-rouge.png)" in markdown
    assert (reports[0].parent / "eval-rouge.png").read_bytes()[:8] == PNG_SIGNATURE


def test_cli_eval_errors(home: Path, tiny_model_dir: Path, qa_file: Path, tmp_path: Path, capsys) -> None:
    code, out = _run(capsys, "eval", "no-such-model", "--set", str(qa_file))
    assert code == EXIT_NOT_FOUND and "no model named 'no-such-model'" in out
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"question": "only a question"}\n')
    code, out = _run(capsys, "eval", str(tiny_model_dir), "--set", str(bad))
    assert code == EXIT_BAD_INPUT and "bad.jsonl:1" in out
    code, out = _run(capsys, "eval", str(tiny_model_dir), "--set", str(qa_file), "--limit", "1", "--no-general", *FAST)
    assert code == 0 and "answer NLL" in out  # a plain model folder: base only


def _register(home: Path, base: Path, adapter: Path) -> str:
    name = "ft-tiny-qec-v1-20250101"
    card = home / "models" / name / "MODEL_CARD.md"
    card.parent.mkdir(parents=True)
    card.write_text(f"# {name}\n")
    ModelRegistry(home / "ftagent.sqlite").register(ModelVersion(
        name=name, family="ft-tiny-qec", version=1, base_model="tiny", base_model_path=str(base),
        subject="quantum error correction", status="staging", gates_passed=True, adapter_path=str(adapter),
        merged_path=None, card_path=str(card), dataset_hash="abc", job_id="job-1", round=1, created_at=now_iso(),
        sources=[], config={}, metrics={"base": {}, "tuned": {}}))
    return name


def test_api_evaluation_endpoint(home: Path, tiny_model_dir: Path, tiny_adapter: Path, tmp_path: Path) -> None:
    service = JobService(resolve_settings({"home": str(home)}))
    name = _register(home, tiny_model_dir, tiny_adapter)
    client = TestClient(create_app(service, TOKEN))
    auth = {"Authorization": f"Bearer {TOKEN}"}
    url = f"{PREFIX}/evaluations"
    fast = {"generate_limit": 1, "max_new_tokens": 4}
    assert client.post(url, json={"model": name, "examples": QA}).status_code == 401
    answer = client.post(url, json={"model": name, "examples": QA, "limit": 2, **fast}, headers=auth)
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["examples"] == 2 and body["tuned"]["answer_nll"] is not None and Path(body["report"]).exists()
    inside = home / "sets" / "qa.jsonl"
    inside.parent.mkdir()
    inside.write_text(json.dumps(QA[0]) + "\n")
    assert client.post(url, json={"model": name, "dataset_path": "sets/qa.jsonl", **fast},
                       headers=auth).status_code == 200
    outside = tmp_path / "outside.jsonl"
    outside.write_text(json.dumps(QA[0]) + "\n")
    refused = client.post(url, json={"model": name, "dataset_path": str(outside)}, headers=auth)
    assert refused.status_code == 422 and "must be inside" in refused.json()["error"]
    assert client.post(url, json={"model": "nope", "examples": QA}, headers=auth).status_code == 404
    assert client.post(url, json={"model": str(tiny_adapter), "examples": QA}, headers=auth).status_code == 404
    assert client.post(url, json={"model": name}, headers=auth).status_code == 422
    assert client.post(url, json={"model": name, "examples": [{"question": "q"}]}, headers=auth).status_code == 422


# -- the LLM judge in `ftagent eval` and in a job's evaluator (real judge server on 127.0.0.1) ----------

PASSAGE = "A stabilizer code measures stabilizer operators to find errors without reading the logical state."


def test_cli_eval_with_a_chat_model_writes_judge_scores(home: Path, tiny_adapter: Path, tmp_path: Path,
                                                        judge, monkeypatch, capsys) -> None:
    server, base_url = judge
    for variable, value in {"FTAGENT_CHAT_MODEL": "judge-model", "FTAGENT_CHAT_BASE_URL": base_url,
                            "FTAGENT_CHAT_TIMEOUT": "5"}.items():
        monkeypatch.setenv(variable, value)
    qa = tmp_path / "qa.jsonl"
    qa.write_text("\n".join(json.dumps(r) for r in [{**QA[0], "passage": PASSAGE}, QA[1], QA[2]]) + "\n")
    code, out = _run(capsys, "eval", str(tiny_adapter), "--set", str(qa), "--no-general", *FAST)
    assert code == 0, out
    assert "judge score (1-5)" in out and "LLM judge: graded 2 of 2 examples" in out
    report = json.loads(next((home / "evaluations").glob("*/report.json")).read_text())
    summary = report["judge"]
    assert summary["judged"] == 2 and summary["model"] == "judge-model" and summary["pairwise"]["pairs"] == 2
    assert set(summary["scores"]) == {"base", "tuned"}
    for example in report["per_example"]:
        assert {"judge_base_correctness", "judge_tuned_correctness", "judge_base_grounding"} <= set(example)
    assert len(server.bodies) == 2 and PASSAGE in server.prompt(0) and "<<<none>>>" in server.prompt(1)
    markdown = next((home / "evaluations").glob("*/report.md")).read_text()
    assert "## LLM judge" in markdown and "| judge (correctness/grounding) |" in markdown
    assert "Tuned vs base: " in markdown and "Judge `judge-model`: graded 2 of 2 examples" in markdown

    code, out = _run(capsys, "eval", str(tiny_adapter), "--set", str(qa), "--no-general", "--no-judge", *FAST)
    assert code == 0 and "judge turned off" in out and len(server.bodies) == 2


def test_job_evaluator_judges_with_the_chunks_passages_and_applies_the_judge_gate(
        tmp_path: Path, tiny_model_dir: Path, tiny_adapter: Path, judge) -> None:
    import numpy as np

    server, base_url = judge
    settings = Settings(home=tmp_path / "home", chat_model="judge-model", chat_base_url=base_url, chat_timeout_s=5)
    ChunkStore(settings.home / "chroma", "job-1").add([Chunk("c1", "d1", PASSAGE, "", 0)], np.ones((1, 4)),
                                                      [{"relevance": 1.0}])
    test = tmp_path / "test.jsonl"
    test.write_text("\n".join(json.dumps({"messages": [{"role": "user", "content": QA[i]["question"]},
                                                        {"role": "assistant", "content": QA[i]["answer"]}],
                                           "metadata": {"chunk_id": "c1" if i == 0 else "gone"}})
                              for i in range(2)) + "\n")
    spec = _spec(evaluation={"generate_limit": 2, "max_new_tokens": 4, "general_texts": 0, "general_qa": 0},
                 gates={"min_judge_win_rate": 0.9})
    state = {"job_id": "job-1", "spec": spec, "round": 1, "curation": curation_summary(collection="job-1"),
             "dataset": dataset_summary(paths={"test": str(test)}),
             "training": training_summary(base_model_path=str(tiny_model_dir), adapter_dir=str(tiny_adapter),
                                          config=spec.training.model_dump(), train_loss=1.0, val_loss=1.0)}
    update = evaluate_model(state, Runtime(context=JobContext(settings)))
    evaluation = update["evaluation"]
    # random tiny models answer nonsense: the literal judge ties them, below the 90% the gate asks for
    gate = next(g for g in evaluation.gates if g.name == "judge_win_rate")
    assert not gate.passed and gate.value == 0.5 and evaluation.passed is False
    assert evaluation.judge["judged"] == 2 and update["rounds"][0].judge == evaluation.judge
    assert PASSAGE in server.prompt(0) and "<<<none>>>" in server.prompt(1)  # chunk text; an unknown chunk: none
    report = json.loads((settings.home / "jobs/job-1/eval/report.json").read_text())
    assert report["per_example"][0]["judge_tuned_correctness"] == 1
    assert "Judge `judge-model`" in job_report({**state, **update, "curation": None, "dataset": None})


@pytest.mark.parametrize(("setting", "job", "expected"), [
    ("bf16", "auto", "bf16"), ("fp32", "auto", "fp32"), ("bf16", "fp32", "fp32"), ("auto", "auto", "auto")])
def test_job_evaluator_compares_in_the_precision_in_effect(
        tmp_path: Path, tiny_model_dir: Path, tiny_adapter: Path, monkeypatch, setting, job, expected) -> None:
    """FTAGENT_PRECISION (or the job's own training.precision) is the evaluation's precision too, as the README
    says: the tuned and base models are loaded in it (the comparison itself runs for real)."""
    import graphs.nodes.evaluator as evaluator_node

    asked: list[str] = []
    real = evaluator_node.compare_with_base

    def spy(*args, **kwargs):
        asked.append(args[9] if len(args) > 9 else kwargs["precision"])
        return real(*args, **kwargs)

    monkeypatch.setattr(evaluator_node, "compare_with_base", spy)
    settings = Settings(home=tmp_path / "home", precision=setting)
    test = tmp_path / "test.jsonl"
    test.write_text(json.dumps({"messages": [{"role": "user", "content": QA[0]["question"]},
                                             {"role": "assistant", "content": QA[0]["answer"]}]}) + "\n")
    spec = _spec(evaluation={"generate_limit": 1, "max_new_tokens": 2, "general_texts": 0, "general_qa": 0,
                             "judge": False}, training={"precision": job})
    state = {"job_id": "job-1", "spec": spec, "round": 1, "curation": curation_summary(collection="job-1"),
             "dataset": dataset_summary(paths={"test": str(test)}),
             "training": training_summary(base_model_path=str(tiny_model_dir), adapter_dir=str(tiny_adapter),
                                          config=spec.training.model_dump(), train_loss=1.0, val_loss=1.0)}
    evaluate_model(state, Runtime(context=JobContext(settings)))
    assert asked == [expected]
