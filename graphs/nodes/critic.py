"""critic: picks a remedy for what failed, records it, and sends the job back with the adjusted spec."""

from __future__ import annotations

from typing import Any

from langgraph.runtime import Runtime

from graphs.context import JobContext
from graphs.critic import (
    Remedy,
    describe_situation,
    pick_remedy,
    remedy_for_gates,
    remedy_for_too_little_data,
    remedy_menu,
)
from graphs.nodes.common import adjusted_spec, merge_adjustments
from graphs.spec import JobSpec
from graphs.state import JobState, RemedyMeasurements, RemedyRecord
from tools.llm.chat_model import chat_model_from


def choose_remedy(state: JobState, runtime: Runtime[JobContext]) -> dict:
    spec = state["spec"]
    evaluation, dataset = state.get("evaluation"), state.get("dataset")
    train_count = dataset.training_rows if dataset else 0
    val_history = state["training"].val_history if state.get("training") else []
    failed = [gate.name for gate in evaluation.failed_gates] if evaluation else []
    if train_count < spec.gates.min_train_examples:
        remedy = remedy_for_too_little_data(spec, train_count)
        metrics_before = RemedyMeasurements(train_examples=train_count)
    else:
        remedy = remedy_for_gates(spec, failed, val_history)
        metrics_before = RemedyMeasurements(failed_gates=failed, tuned=evaluation.tuned if evaluation else None,
                                            base=evaluation.base if evaluation else None)
    # The chat model (when configured) may pick another remedy from the policy's bounded menu.
    remedy, how = pick_remedy(chat_model_from(runtime.context.settings), remedy_menu(spec, train_count),
                              remedy, describe_situation(metrics_before.situation(), val_history))
    record = remedy_record(state, spec, remedy, metrics_before, how)
    runtime.context.events(state["job_id"]).emit(
        "critic", "decision", f"{remedy.reason} -> back to {remedy.route}", **record.model_dump())
    return {"spec": adjusted_spec(spec, remedy.section, remedy.changes),
            "adjustments": merge_adjustments(state.get("adjustments"), remedy.section, remedy.changes),
            "remedies": [record]}


def remedy_record(state: JobState, spec: JobSpec, remedy: Remedy, metrics_before: RemedyMeasurements,
                  how: dict[str, Any]) -> RemedyRecord:
    """The decision as the job report shows it: what changed from which values, and why."""
    section = getattr(spec, remedy.section).model_dump()
    return RemedyRecord(after_round=state.get("round", 0), remedy_number=len(state.get("remedies", [])) + 1,
                        **remedy.to_dict(), before={k: section[k] for k in remedy.changes},
                        metrics_before=metrics_before, **how)
