"""Small helpers every node uses: the effective spec (spec + the critic's adjustments) and events."""

from __future__ import annotations

from typing import Any

from graphs.spec import JobSpec
from graphs.state import JobState


def effective_spec(state: JobState) -> JobSpec:
    """The job spec with the critic's adjustments applied on top (section by section)."""
    spec = dict(state["spec"])
    for section, changes in (state.get("adjustments") or {}).items():
        spec[section] = {**spec.get(section, {}), **changes}
    return JobSpec.model_validate(spec)


def merge_adjustments(current: dict[str, Any] | None, section: str, changes: dict[str, Any]) -> dict[str, Any]:
    adjusted = {k: dict(v) for k, v in (current or {}).items()}
    adjusted[section] = {**adjusted.get(section, {}), **changes}
    return adjusted
