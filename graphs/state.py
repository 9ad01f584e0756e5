"""The job state: one typed schema. Nodes return partial updates; accumulating fields declare
reducers.

Each specialist hands the next a typed result (a pydantic model below), read by attribute: the
researcher a ResearchResult, the curator a CurationSummary, the generator (or the import of the
user's own dataset) a DatasetSummary, the trainer a TrainingSummary, the evaluator an
EvaluationResult and a RoundRecord, the critic a RemedyRecord and the adjusted JobSpec. The spec in
the state is the one the current round runs with (intake's reading, then each remedy applied by the
critic), so no node rebuilds it; `round` (training rounds started) lives only in the state and in
each round's record.

Large artefacts (document texts, chunks, examples, adapters) live on disk in the job folder or the
vector store; the state holds their summaries and paths, so checkpoints stay small. The checkpointer
stores these models by (module, name) and rebuilds only the types in CHECKPOINT_TYPES
(graphs/checkpointer.py)."""

from __future__ import annotations

import operator
from typing import Annotated, Any, Literal, TypedDict

from pydantic import BaseModel, ConfigDict, Field

from graphs.spec import JobSpec
from tools.stores.model_registry import ModelVersion


class _Result(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class IntakeReading(_Result):
    """How the request was read: the understood line, by whom, and where the readers disagreed."""

    understood: str
    read_by: str = "offline reader"
    disagreements: list[str] = []


class SourceHarvest(_Result):
    """One planned source: its quota and why it was chosen, the searches run, documents kept."""

    source: str
    quota: int
    reason: str
    documents: int
    searches: list[dict[str, Any]] = []
    unreachable: str = ""  # why the source's host could not be reached at all


class ResearchResult(_Result):
    """The last research pass: sources and why, their searches, the HTTP cache's hits and misses."""

    sources: list[SourceHarvest] = []
    http: dict[str, int] = {}
    cache: str = ""


class DroppedDocument(_Result):
    doc_id: str
    title: str
    reason: str
    relevance: float


class CurationSummary(_Result):
    """What curation kept: counts by reason, the documents dropped, the thresholds used."""

    collection: str
    documents_in: int
    documents_kept: int
    documents_dropped: list[DroppedDocument] = []
    document_relevance: dict[str, float] = {}
    chunks_in: int
    chunks_kept: int
    dropped_chunks: dict[str, int] = {}
    kept_chunks_by_source: dict[str, int] = {}
    queries: list[str] = []
    chunk_scores: str = ""  # jobs/<id>/curation/chunks.jsonl: every chunk's scores and fate
    chunking: str = ""
    thresholds: dict[str, Any] = {}


class OwnDataset(_Result):
    """The user's own dataset the job trained on (research, curation and generation skipped)."""

    path: str
    format: str
    formats: dict[str, int] = {}
    rows: int
    had_splits: bool


class DatasetSummary(_Result):
    """The dataset a round trains on: split files, counts and hash, and (when generated) how."""

    paths: dict[str, str]  # split -> chat JSONL
    exports: dict[str, dict[str, str]] = {}  # format -> split -> file
    counts: dict[str, int]  # QA rows per split
    types: dict[str, int] = {}
    hash: str
    system_prompt: str = ""
    card: str = ""
    own_dataset: OwnDataset | None = None
    # generated datasets only
    generator: str | None = None
    generator_fallback: str = ""
    chunks_available: int = 0
    chunks_drawn: int = 0
    generated: int = 0
    dropped_examples: dict[str, int] = {}
    generator_stats: dict[str, Any] = {}
    kept_words: int = 0
    rewrite_stats: dict[str, int] = {}
    yield_fraction: float = Field(0.0, alias="yield")  # QA rows kept / written
    documents_path: str | None = (
        None  # the document rows (continued pretraining) of the training set
    )
    document_rows: int = 0
    document_passages: int = 0
    train_rows: int | None = None  # QA + document rows of the training set
    repeated_questions: int = 0  # second passes of the questions about whole documents
    sentence_questions_left_out: int = 0  # a study's sentence questions not trained (trim_sentence_questions)
    rewrite_rows: int = 0
    mix: dict[str, int | float] = {}  # rows of each kind, and the document share
    documents_per_split: dict[str, int] = {}
    difficulty: dict[str | None, int] = {}
    coverage: dict[str, Any] = {}

    @property
    def training_rows(self) -> int:
        """Rows the trainer gets: QA plus document rows (the train split of an own dataset)."""
        return self.train_rows if self.train_rows is not None else self.counts.get("train", 0)


class TrainingSummary(_Result):
    """One training round: the recipe's result (without the loss history), its config and what it
    saw."""

    adapter_dir: str
    base_model_path: str
    config: dict[str, Any]  # the TrainingConfig the recipe ran with
    steps: int
    total_steps: int
    train_loss: float
    val_loss: float | None = None
    val_history: list[float] = []
    train_tokens: int = 0
    tokens_per_second: float = 0.0
    wall_seconds: float = 0.0
    resumed_from_step: int = 0
    stopped_early: bool = False
    precision: str = ""
    device: str = ""
    truncated_examples: int = 0
    backend: str = "peft"
    rollbacks: int = 0
    micro_batch: int = 0
    gradient_accumulation: int = 1
    gradient_checkpointing: bool = False
    plot_path: str | None = None
    peak_rss_mb: float = 0.0
    processes: int = 1
    distributed: str = "single"
    distributed_backend: str | None = None
    replay_general: float = 0.0
    train_examples: int = 0  # QA rows incl. replayed general examples and feedback corrections
    document_rows: int = 0
    replay_examples: int = 0
    feedback_examples: int = 0


class GateCheck(_Result):
    """One quality gate's verdict on a round (graphs/gates.py computes it)."""

    name: str
    passed: bool
    value: float | None = None
    threshold: float | None = None
    detail: str


class EvaluationResult(_Result):
    """Tuned vs base on the held-out split and the general sets, the judge's grades, the gates."""

    base: dict[str, Any]  # metric -> value (tools/evaluation/scoring.py)
    tuned: dict[str, Any]
    judge: dict[str, Any] = {}
    gates: list[GateCheck] = []
    passed: bool
    report: str = ""  # the round's Markdown report

    @property
    def failed_gates(self) -> list[GateCheck]:
        return [gate for gate in self.gates if not gate.passed]


class RoundDataset(_Result):
    counts: dict[str, int] | None = None
    hash: str | None = None


class RoundRecord(_Result):
    """What the job report shows per round: the training config and data it used (so the critic's
    changes between rounds are visible), the losses, tuned vs base metrics and every gate."""

    round: int
    config: dict[str, Any]
    steps: int | None = None
    train_loss: float | None = None
    val_loss: float | None = None
    val_history: list[float] | None = None
    replay_general: float = 0.0
    replay_examples: int = 0
    train_examples: int | None = None
    document_rows: int = 0
    processes: int = 1
    distributed: str = "single"
    distributed_backend: str | None = None
    dataset: RoundDataset = RoundDataset()
    base: dict[str, Any]
    tuned: dict[str, Any]
    judge: dict[str, Any] = {}
    gates: list[GateCheck] = []
    passed: bool


class RemedyMeasurements(_Result):
    """What the critic measured before choosing a remedy: after an evaluation, the failed gates and both
    models' metrics; before any round, the training example count that was too small."""

    failed_gates: list[str] = []
    tuned: dict[str, Any] | None = None
    base: dict[str, Any] | None = None
    train_examples: int | None = None  # set when there was too little data to train

    def situation(self) -> dict[str, Any]:
        """The measurements given (the chat model's prompt shows each)."""
        return self.model_dump(include=self.model_fields_set)


class RemedyRecord(_Result):
    """One critic decision: after which round, why (measurements), what changed, where to."""

    after_round: int
    remedy_number: int
    route: Literal["researcher", "curator", "generator", "trainer"]  # where the job goes back to
    section: str  # the part of the spec that changed
    changes: dict[str, Any]
    reason: str
    before: dict[str, Any]  # the changed settings' values before
    metrics_before: RemedyMeasurements
    chosen_by: str = "policy"
    choice_reason: str = ""
    policy_choice: str | None = None  # the policy's pick when the chat model chose another


class JobState(TypedDict, total=False):
    job_id: str
    request: str  # the sentence as the person wrote it
    options: dict[str, Any]  # explicit settings from the front door (docs path, overrides)
    spec: JobSpec  # what this round runs with: intake's reading with the critic's remedies applied
    intake: IntakeReading
    status: str  # "running", "succeeded", "failed"
    round: int  # training rounds started; the cap is spec.max_rounds (+1 for the first)
    documents: Annotated[
        list[dict[str, Any]], operator.add
    ]  # kept documents' provenance + file path
    skipped: Annotated[
        list[dict[str, Any]], operator.add
    ]  # per-item failures: {what, reason, phase}
    research: ResearchResult
    curation: CurationSummary
    dataset: DatasetSummary
    adjustments: dict[
        str, Any
    ]  # the critic's changes by spec section, all rounds together (a record)
    training: TrainingSummary
    evaluation: EvaluationResult
    rounds: Annotated[list[RoundRecord], operator.add]  # one per evaluation
    remedies: Annotated[list[RemedyRecord], operator.add]  # one per critic decision
    model: ModelVersion  # the registered version
    outcome: str  # one line a person reads at the end


# The types the checkpointer may rebuild from a stored checkpoint besides plain data.
CHECKPOINT_TYPES: frozenset[tuple[str, str]] = frozenset(
    (kind.__module__, kind.__name__)
    for kind in (
        JobSpec,
        ModelVersion,
        IntakeReading,
        ResearchResult,
        CurationSummary,
        DatasetSummary,
        TrainingSummary,
        EvaluationResult,
        RoundRecord,
        RemedyRecord,
    )
)


def plain_state(state: JobState) -> dict[str, Any]:
    """The state as plain data: each typed result as its dict, under the names the results had before
    they were typed (the dataset's "yield"), for callers that want JSON-like values."""
    return {key: _plain(value) for key, value in state.items()}


def _plain(value: Any) -> Any:
    if isinstance(value, BaseModel):
        return value.model_dump(by_alias=True)
    if isinstance(value, ModelVersion):
        return value.to_dict()
    return [_plain(item) for item in value] if isinstance(value, list) else value
