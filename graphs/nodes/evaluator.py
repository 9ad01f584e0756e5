"""evaluator: tuned vs base on the held-out test split and on general text; applies the gates."""

from __future__ import annotations

import json
from pathlib import Path

from langgraph.runtime import Runtime

from graphs.context import JobContext
from graphs.gates import check_gates
from graphs.nodes.common import effective_spec
from graphs.reports import write_evaluation_report
from graphs.state import JobState
from tools.dataset import read_jsonl
from tools.evaluation import compare_with_base

GENERAL_TEXTS = Path(__file__).resolve().parents[2] / "eval_sets" / "general" / "general_text.jsonl"


def general_texts(limit: int) -> list[str]:
    if limit <= 0 or not GENERAL_TEXTS.exists():
        return []
    return [json.loads(line)["text"] for line in GENERAL_TEXTS.read_text().splitlines() if line.strip()][:limit]


def evaluate_model(state: JobState, runtime: Runtime[JobContext]) -> dict:
    spec = effective_spec(state)
    events = runtime.context.events(state["job_id"])
    training = state["training"]
    test = read_jsonl(state["dataset"]["paths"]["test"])
    events.emit("evaluator", "phase", f"round {training['round']}: comparing tuned and base on "
                f"{len(test)} held-out examples")
    comparison = compare_with_base(
        training["base_model_path"], training["adapter_dir"], test, general_texts(spec.evaluation.general_texts),
        spec.evaluation.max_new_tokens, spec.evaluation.generate_limit, runtime.context.settings.threads)
    base, tuned = comparison.base.to_dict(), comparison.tuned.to_dict()
    gates = check_gates(base, tuned, spec.gates)
    passed = all(g["passed"] for g in gates)
    evaluation = {"round": training["round"], "base": base, "tuned": tuned, "gates": gates, "passed": passed}
    report = write_evaluation_report(runtime.context.paths(state["job_id"]).eval, evaluation,
                                     comparison.per_example)
    evaluation["report"] = str(report)
    for gate in gates:
        events.emit("evaluator", "gate", f"{'PASS' if gate['passed'] else 'FAIL'} {gate['name']}: {gate['detail']}",
                    **gate)
    round_record = {"round": training["round"], "config": training["config"], "train_loss": training["train_loss"],
                    "val_loss": training["val_loss"], "base": base, "tuned": tuned, "gates": gates, "passed": passed}
    return {"evaluation": evaluation, "rounds": [round_record]}
