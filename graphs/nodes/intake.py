"""intake: the request becomes a JobSpec (or a clear error before any work starts)."""

from __future__ import annotations

from langgraph.runtime import Runtime

from graphs.context import JobContext
from graphs.spec import build_spec, understood_line
from graphs.state import JobState


def parse_job_request(state: JobState, runtime: Runtime[JobContext]) -> dict:
    spec = build_spec(state["request"], state.get("options"))
    log = runtime.context.events(state["job_id"])
    read = next((e["data"] for e in reversed(log.read()) if e["kind"] == "understood"), {})
    log.emit("intake", "phase", understood_line(spec), spec=spec.model_dump())
    intake = {"understood": understood_line(spec), "read_by": read.get("read_by", "offline reader"),
              "disagreements": read.get("disagreements", [])}
    return {"spec": spec.model_dump(), "status": "running", "round": 0, "intake": intake}
