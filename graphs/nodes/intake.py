"""intake: the request becomes a JobSpec (or a clear error before any work starts)."""

from __future__ import annotations

from langgraph.runtime import Runtime

from graphs.context import JobContext
from graphs.spec import build_spec
from graphs.state import JobState


def parse_job_request(state: JobState, runtime: Runtime[JobContext]) -> dict:
    spec = build_spec(state["request"], state.get("options"))
    runtime.context.events(state["job_id"]).emit(
        "intake", "phase", f"fine-tune {spec.base_model} on {spec.subject!r}", spec=spec.model_dump())
    return {"spec": spec.model_dump(), "status": "running", "round": 0}
