"""stop_without_model: the job ends with nothing to train on, and says why and what to try."""

from __future__ import annotations

from langgraph.runtime import Runtime

from graphs.context import JobContext
from graphs.reports import job_report
from graphs.state import JobState


def stop_without_model(state: JobState, runtime: Runtime[JobContext]) -> dict:
    if not state.get("documents"):
        reasons = "; ".join(f"{s['what']}: {s['reason']}" for s in state.get("skipped", [])[:5])
        outcome = ("no documents to learn from" + (f" ({reasons})" if reasons else "") +
                   ". Try: --docs PATH with .md/.txt/.html/.pdf files on the subject")
    elif not (curation := state.get("curation")) or not curation.chunks_kept:
        outcome = ("no passage of the documents was relevant enough to the subject. Try: documents closer to "
                   "the subject, or a subject phrased like the documents' own terms")
    else:
        dataset, gates = state.get("dataset"), state["spec"].gates
        rows, words = (dataset.training_rows, dataset.kept_words) if dataset else (0, 0)
        outcome = (f"too little text to learn from: {words} words kept after curation "
                   f"(a job needs about {gates.min_kept_words}), giving {rows} training rows "
                   f"(the gate needs {gates.min_train_examples}) even after widening. Try: more documents")
    runtime.context.events(state["job_id"]).emit("finish", "phase", f"stopped: {outcome}")
    final = {**state, "outcome": f"stopped: {outcome}", "status": "failed"}
    runtime.context.paths(state["job_id"]).report.write_text(job_report(final))
    return {"outcome": f"stopped: {outcome}", "status": "failed"}
