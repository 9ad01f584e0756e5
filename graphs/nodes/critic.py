"""critic: picks a remedy for what failed, records it, and sends the job back."""

from __future__ import annotations

from langgraph.runtime import Runtime

from graphs.context import JobContext
from graphs.critic import (
    describe_situation,
    pick_remedy,
    remedy_for_gates,
    remedy_for_too_little_data,
    remedy_menu,
)
from graphs.nodes.common import effective_spec, merge_adjustments
from graphs.state import JobState
from tools.llm.chat_model import chat_model_from


def choose_remedy(state: JobState, runtime: Runtime[JobContext]) -> dict:
    spec = effective_spec(state)
    evaluation = state.get("evaluation") or {}
    dataset = state.get("dataset") or {}
    train_count = dataset.get("train_rows", dataset.get("counts", {}).get("train", 0))
    training = state.get("training") or {}
    failed = [g for g in evaluation.get("gates", []) if not g["passed"]]
    if train_count < spec.gates.min_train_examples:
        remedy, metrics_before = remedy_for_too_little_data(spec, train_count), {"train_examples": train_count}
    else:
        remedy = remedy_for_gates(spec, failed, training)
        metrics_before = {"failed_gates": [g["name"] for g in failed], "tuned": evaluation.get("tuned"),
                          "base": evaluation.get("base")}
    # The chat model (when configured) may pick another remedy from the policy's bounded menu.
    remedy, how = pick_remedy(chat_model_from(runtime.context.settings),
                              remedy_menu(spec, failed, training, train_count), remedy,
                              describe_situation(metrics_before, training))
    section = getattr(spec, remedy.section).model_dump()
    record = {"after_round": state.get("round", 0), "remedy_number": len(state.get("remedies", [])) + 1,
              **remedy.to_dict(), "before": {k: section[k] for k in remedy.changes},
              "metrics_before": metrics_before, **how}
    runtime.context.events(state["job_id"]).emit(
        "critic", "decision", f"{remedy.reason} -> back to {remedy.route}", **record)
    return {"adjustments": merge_adjustments(state.get("adjustments"), remedy.section, remedy.changes),
            "remedies": [record]}
