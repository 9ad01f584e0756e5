"""critic: picks a remedy for what failed, records it, and sends the job back."""

from __future__ import annotations

from langgraph.runtime import Runtime

from graphs.context import JobContext
from graphs.critic import remedy_for_gates, remedy_for_too_little_data
from graphs.nodes.common import effective_spec, merge_adjustments
from graphs.state import JobState


def choose_remedy(state: JobState, runtime: Runtime[JobContext]) -> dict:
    spec = effective_spec(state)
    evaluation = state.get("evaluation") or {}
    train_count = (state.get("dataset") or {}).get("counts", {}).get("train", 0)
    if train_count < spec.gates.min_train_examples:
        remedy, metrics_before = remedy_for_too_little_data(spec, train_count), {"train_examples": train_count}
    else:
        failed = [g for g in evaluation.get("gates", []) if not g["passed"]]
        remedy = remedy_for_gates(spec, failed, state.get("training") or {})
        metrics_before = {"failed_gates": [g["name"] for g in failed], "tuned": evaluation.get("tuned"),
                          "base": evaluation.get("base")}
    section = getattr(spec, remedy.section).model_dump()
    record = {"after_round": state.get("round", 0), "remedy_number": len(state.get("remedies", [])) + 1,
              **remedy.to_dict(), "before": {k: section[k] for k in remedy.changes}, "metrics_before": metrics_before}
    runtime.context.events(state["job_id"]).emit(
        "critic", "decision", f"{remedy.reason} -> back to {remedy.route}", **record)
    return {"adjustments": merge_adjustments(state.get("adjustments"), remedy.section, remedy.changes),
            "remedies": [record]}
