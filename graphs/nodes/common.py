"""What the critic's remedies do to the job: the spec with one section's changes applied (validated, so a
remedy can never produce a spec intake would refuse), and the record of every change by section."""

from __future__ import annotations

from typing import Any

from graphs.spec import JobSpec


def adjusted_spec(spec: JobSpec, section: str, changes: dict[str, Any]) -> JobSpec:
    """`spec` with `changes` applied to its `section` (the spec the next round runs with)."""
    values = spec.model_dump()
    values[section] = {**values[section], **changes}
    return JobSpec.model_validate(values)


def merge_adjustments(current: dict[str, Any] | None, section: str, changes: dict[str, Any]) -> dict[str, Any]:
    adjusted = {k: dict(v) for k, v in (current or {}).items()}
    adjusted[section] = {**adjusted.get(section, {}), **changes}
    return adjusted
