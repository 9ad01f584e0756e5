"""Routers: pure functions of the state, returning the name of the next node."""

from __future__ import annotations

from typing import Literal

from graphs.state import JobState


def _rounds_left(state: JobState) -> bool:
    return len(state.get("remedies", [])) < state["spec"]["max_rounds"]


def after_intake(state: JobState) -> Literal["import_dataset", "researcher"]:
    """The user's own dataset skips research, curation and generation."""
    return "import_dataset" if state["spec"].get("dataset") else "researcher"


def after_research(state: JobState) -> Literal["curator", "stop_without_model"]:
    return "curator" if state.get("documents") else "stop_without_model"


def after_curation(state: JobState) -> Literal["generator", "critic", "stop_without_model"]:
    if (state.get("curation") or {}).get("chunks_kept", 0) > 0:
        return "generator"
    return "critic" if _rounds_left(state) else "stop_without_model"


def after_generation(state: JobState) -> Literal["trainer", "critic", "stop_without_model"]:
    train = (state.get("dataset") or {}).get("counts", {}).get("train", 0)
    if train >= state["spec"]["gates"]["min_train_examples"]:
        return "trainer"
    return "critic" if _rounds_left(state) else "stop_without_model"


def after_evaluation(state: JobState) -> Literal["deployer", "critic"]:
    passed = (state.get("evaluation") or {}).get("passed", False)
    return "critic" if not passed and _rounds_left(state) else "deployer"


def after_critic(state: JobState) -> Literal["researcher", "curator", "generator", "trainer"]:
    return state["remedies"][-1]["route"]
