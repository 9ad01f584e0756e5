"""Routers: pure functions of the state, returning the name of the next node."""

from __future__ import annotations

from typing import Literal

from graphs.state import JobState


def _rounds_left(state: JobState) -> bool:
    return len(state.get("remedies", [])) < state["spec"].max_rounds


def after_intake(state: JobState) -> Literal["import_dataset", "researcher"]:
    """The user's own dataset skips research, curation and generation."""
    return "import_dataset" if state["spec"].dataset else "researcher"


def after_research(state: JobState) -> Literal["curator", "stop_without_model"]:
    return "curator" if state.get("documents") else "stop_without_model"


def after_curation(state: JobState) -> Literal["generator", "critic", "stop_without_model"]:
    curation = state.get("curation")
    if curation is not None and curation.chunks_kept > 0:
        return "generator"
    return "critic" if _rounds_left(state) else "stop_without_model"


def after_generation(state: JobState) -> Literal["trainer", "critic", "stop_without_model"]:
    """Train when there are enough training rows, or when the documents hold enough text (then even a
    handful of rows is what that text gives); otherwise a data remedy, or stop."""
    dataset, gates = state.get("dataset"), state["spec"].gates
    train = dataset.training_rows if dataset else 0
    enough_text = dataset is not None and dataset.kept_words >= gates.min_kept_words and train >= 2
    if train >= gates.min_train_examples or enough_text:
        return "trainer"
    return "critic" if _rounds_left(state) else "stop_without_model"


def after_evaluation(state: JobState) -> Literal["deployer", "critic"]:
    evaluation = state.get("evaluation")
    passed = evaluation is not None and evaluation.passed
    return "critic" if not passed and _rounds_left(state) else "deployer"


def after_critic(state: JobState) -> Literal["researcher", "curator", "generator", "trainer"]:
    return state["remedies"][-1].route
