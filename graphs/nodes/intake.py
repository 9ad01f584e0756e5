"""intake: the request becomes a JobSpec (or a clear error before any work starts), and the base model is
found and checked (config, causal LM, tokenizer, chat template) so a bad one fails before any research."""

from __future__ import annotations

from langgraph.runtime import Runtime

from graphs.context import JobContext
from graphs.spec import build_spec, understood_line
from graphs.state import IntakeReading, JobState
from tools.models.catalogue import check_base_model, locate_base_model


def parse_job_request(state: JobState, runtime: Runtime[JobContext]) -> dict:
    spec = build_spec(state["request"], state.get("options"))
    log = runtime.context.events(state["job_id"])
    read = next((e["data"] for e in reversed(log.read()) if e["kind"] == "understood"), {})
    log.emit("intake", "phase", understood_line(spec), spec=spec.model_dump())
    settings = runtime.context.settings
    path, checkable = locate_base_model(spec.base_model, settings.home, settings.hub_downloads)
    if checkable:
        checked = check_base_model(path)
        log.emit("intake", "decision", f"base model {spec.base_model}: "
                 f"{checked['architecture'] or checked['model_type']} at {path}, with a chat template",
                 base_model_path=str(path), **checked)
    intake = IntakeReading(understood=understood_line(spec), read_by=read.get("read_by", "offline reader"),
                           disagreements=read.get("disagreements", []))
    return {"spec": spec, "status": "running", "round": 0, "intake": intake}
