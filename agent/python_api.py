"""The Python door: `FineTuner` for scripts and notebooks, `build_graph` for use as a LangGraph subgraph,
and a LangChain tool that starts a job and follows it to its end (for other agents).

    from agent import FineTuner
    tuner = FineTuner(home="~/.ftagent")
    result = tuner.run("fine-tune SmolLM2 on quantum error correction", docs_path="papers/")

As a subgraph, the parent declares the job context and passes one on invoke (the nodes read their
settings and event log from it); the job's nodes then share the parent's JobState keys:

    parent = StateGraph(JobState, context_schema=JobContext)
    parent.add_node("fine_tune", build_graph())
    parent.compile().invoke({"job_id": ..., "request": ..., "options": {...}},
                            context=JobContext(resolve_settings()))

The job's results in the state are typed (graphs/state.py: DatasetSummary, EvaluationResult, ...; read
by attribute, `plain_state` gives them as dicts). A parent with its own checkpointer should give it
`serde=StrictSerializer()` (graphs/checkpointer.py), which rebuilds exactly those types.
"""

from __future__ import annotations

import getpass
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from agent.queue import JobResult, run_job
from agent.service import JobService
from agent.settings import Settings, resolve_settings
from graphs.graph import build_graph
from tools.events import EventListener

__all__ = ["FineTuner", "build_graph", "fine_tune_tool"]


class FineTuner:
    """Submit, run and follow fine-tuning jobs from Python; the same service as every other door."""

    def __init__(self, home: str | Path | None = None, settings: Settings | None = None,
                 user: str | None = None) -> None:
        self.service = JobService(settings or resolve_settings({"home": str(home) if home else None}))
        self.user = user or getpass.getuser()

    def submit(self, request: str, **options: Any) -> str:
        """Queue a job (a worker runs it) and return its id; RequestError if the sentence cannot be read."""
        return self.service.submit(request, options, owner=self.user).job_id

    def understood(self, job_id: str) -> str:
        """The one line of what the job's request was understood to ask (as every door shows it)."""
        return self.service.understood(self.service.jobs.get(job_id))

    def run(self, request: str, listeners: tuple[EventListener, ...] = (), **options: Any) -> JobResult:
        """Submit a job and run it to its end in this process (cancellable from any door)."""
        job_id = self.service.submit(request, options, owner=self.user, claim=True).job_id
        return run_job(self.service, job_id, listeners)

    def resume(self, job_id: str, listeners: tuple[EventListener, ...] = ()) -> JobResult:
        """Continue an interrupted, failed or cancelled job from its last checkpoint."""
        return run_job(self.service, job_id, listeners, resume=True)

    def status(self, job_id: str) -> dict[str, Any]:
        return self.service.status(job_id)

    def events(self, job_id: str, after: int = 0, follow: bool = False,
               timeout: float | None = None) -> Iterator[dict[str, Any]]:
        """The job's events (phase changes, decisions, training steps); `follow` waits until it ends."""
        return self.service.events(job_id, after=after, follow=follow, timeout=timeout)

    def cancel(self, job_id: str) -> str:
        """Cancel one of your jobs; returns its status afterwards."""
        return self.service.cancel(job_id, self.user).status

    def models(self) -> list[dict[str, Any]]:
        return [version.to_dict() for version in self.service.models()]


def fine_tune_tool(tuner: FineTuner, **default_options: Any):
    """A LangChain tool that starts a fine-tuning job from a sentence and follows it to its end;
    `default_options` (docs_path, base_model, training…) apply to every job it starts."""
    from langchain_core.tools import tool

    @tool("fine_tune")
    def fine_tune(request: str) -> str:
        """Fine-tune a language model from one sentence, e.g. 'fine-tune SmolLM2 on quantum error correction'.
        Runs the whole job (research, curation, training, evaluation, registration) and returns its outcome."""
        from graphs.spec import RequestError

        phases: list[str] = []
        try:
            result = tuner.run(request, listeners=(lambda e: phases.append(e["phase"]) if e["kind"] == "phase"
                                                   else None,), **default_options)
        except RequestError as error:
            return f"cannot start: {error}"
        followed = " -> ".join(dict.fromkeys(phases))
        return f"job {result.job_id} {result.status}: {result.outcome} (phases: {followed})"

    return fine_tune
