"""The job state: one typed schema. Nodes return partial updates; accumulating fields declare reducers.

Large artefacts (document texts, chunks, examples, adapters) live on disk in the job folder or the
vector store; the state holds their summaries and paths, so checkpoints stay small."""

from __future__ import annotations

import operator
from typing import Annotated, Any, TypedDict


class JobState(TypedDict, total=False):
    job_id: str
    request: str  # the sentence as the person wrote it
    options: dict[str, Any]  # explicit settings from the front door (docs path, overrides)
    spec: dict[str, Any]  # JobSpec.model_dump(), set by intake
    intake: dict[str, Any]  # the understood line, who read the request, the readers' disagreements
    status: str  # "running", "succeeded", "failed"
    round: int  # training rounds started; the cap is spec.max_rounds (+1 for the first)
    documents: Annotated[list[dict[str, Any]], operator.add]  # kept documents' provenance + file path
    skipped: Annotated[list[dict[str, Any]], operator.add]  # per-item failures: {what, reason, phase}
    research: dict[str, Any]  # the last research pass: sources and why, queries, HTTP cache hits/misses
    curation: dict[str, Any]
    dataset: dict[str, Any]
    adjustments: dict[str, Any]  # the critic's changes to curation/generation/training, applied on top of spec
    training: dict[str, Any]
    evaluation: dict[str, Any]
    rounds: Annotated[list[dict[str, Any]], operator.add]  # one per evaluation: config, metrics, gates
    remedies: Annotated[list[dict[str, Any]], operator.add]  # one per critic decision: why, what changed
    model: dict[str, Any]  # the registered version
    outcome: str  # one line a person reads at the end
