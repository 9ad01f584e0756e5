"""trainer: LoRA on the training split with the recipe in tools/training/lora.py; resumes from its checkpoints."""

from __future__ import annotations

from pathlib import Path

from langgraph.runtime import Runtime

from graphs.context import JobContext
from graphs.nodes.tracking import round_trackers
from graphs.reports import processes_phrase
from graphs.spec import JobSpec
from graphs.state import DatasetSummary, JobState, TrainingSummary
from tools.data.dataset import read_jsonl
from tools.evaluation.scoring import general_qa, mix_replay
from tools.events import EventLog
from tools.llm.prompt_files import render_prompt
from tools.models.catalogue import resolve_base_model
from tools.stores.feedback import FeedbackStore, corrections_as_examples
from tools.stores.model_registry import ModelRegistry, family_name
from tools.training.backends import train_lora
from tools.training.config import TrainingConfig


def feedback_corrections(spec, database: Path) -> list[dict]:
    """Corrected answers people gave to earlier versions of this model (same base, same subject),
    as chat training examples for the next version."""
    family = family_name(spec.base_model, spec.subject)
    names = [v.name for v in ModelRegistry(database).list() if v.family == family]
    if not names:
        return []
    store = FeedbackStore(database)
    system_prompt = render_prompt("system_subject_expert", subject=spec.subject)
    return corrections_as_examples([item for name in names for item in store.list(name)], system_prompt)


def replay_examples(spec: JobSpec, train: list[dict]) -> list[dict]:
    """General questions to mix in (the critic's remedy for a general regression): replay_general x the
    training split, from the replay part of tools/eval_sets/general (never the questions the evaluator asks)."""
    if spec.training.replay_general <= 0:
        return []
    mixed = mix_replay(train, general_qa(render_prompt("system_general"), 10_000, replay=True),
                       spec.training.replay_general, spec.training.seed)
    return [record for record in mixed if (record.get("metadata") or {}).get("replay")]


def training_examples(spec: JobSpec, train: list[dict], database: Path,
                      events: EventLog) -> tuple[list[dict], dict[str, int]]:
    """The training split plus replayed general examples and feedback corrections, with the counts of
    what was added ({"replay_examples", "feedback_examples"}); each addition is also an event."""
    replayed = replay_examples(spec, train)
    if replayed:
        events.emit("trainer", "decision", f"replaying {len(replayed)} general examples "
                    f"({spec.training.replay_general:.0%} of {len(train)})", replayed=len(replayed))
    corrections = feedback_corrections(spec, database)
    if corrections:  # what people corrected in earlier versions of this model
        events.emit("trainer", "decision", f"adding {len(corrections)} feedback corrections to the training set",
                    feedback_examples=len(corrections))
    # the order does not matter: the recipe shuffles every epoch (tools/training/batches.length_grouped_batches)
    return train + replayed + corrections, {"replay_examples": len(replayed), "feedback_examples": len(corrections)}


def training_documents(dataset: DatasetSummary) -> list[dict]:
    """The dataset's document rows ({"text": ...}); none for datasets written before the mix existed."""
    path = dataset.documents_path
    return read_jsonl(Path(path)) if path and Path(path).exists() else []


def train_adapter(state: JobState, runtime: Runtime[JobContext]) -> dict:
    spec = state["spec"]
    job_id, round_number = state["job_id"], state.get("round", 0) + 1
    events = runtime.context.events(job_id)
    paths = runtime.context.paths(job_id)
    settings = runtime.context.settings
    base_path = resolve_base_model(spec.base_model, settings.home, settings.hub_downloads)
    config = TrainingConfig(
        base_model_path=str(base_path),
        output_dir=str(paths.adapter(round_number)),
        checkpoint_dir=str(paths.checkpoints(round_number)),
        metrics_path=str(paths.metrics),
        threads=runtime.context.settings.threads,
        **(spec.training.model_dump() | {
            "precision": runtime.context.settings.precision_for(spec.training.precision)}),
    )
    events.emit("trainer", "phase", f"round {round_number}: training LoRA r={config.lora_r} "
                f"lr={config.learning_rate:g} epochs={config.epochs:g}", config=config.model_dump())

    tracker = round_trackers(settings, spec, paths, job_id, round_number, events)
    tracker.config(config.model_dump())

    def on_step(metrics) -> None:
        tracker.step(metrics)
        events.emit("trainer", "step", f"step {metrics.step}/{metrics.total_steps} loss {metrics.loss:.3f}",
                    **metrics.__dict__)

    def on_event(message: str, data: dict) -> None:
        tracker.event(message, data)
        events.emit("trainer", "decision", message, **data)

    train, added = training_examples(spec, read_jsonl(state["dataset"].paths["train"]),
                                     runtime.context.settings.database, events)
    documents = training_documents(state["dataset"])
    if documents:
        events.emit("trainer", "decision", f"training on {len(train)} QA rows and {len(documents)} document rows "
                    "(loss on every token of a document row, on the answer of a QA row)",
                    qa_rows=len(train), document_rows=len(documents))
    train = train + documents
    try:
        result = train_lora(config, train, read_jsonl(state["dataset"].paths["val"]), on_step, on_event)
        tracker.adapter(result.adapter_dir)
    except BaseException:
        tracker.close(failed=True)
        raise
    tracker.close()
    summary = TrainingSummary(
        **{k: v for k, v in result.to_dict().items() if k != "loss_history"}, base_model_path=str(base_path),
        config=config.model_dump(), replay_general=spec.training.replay_general,
        train_examples=len(train) - len(documents), document_rows=len(documents), **added)
    events.emit("trainer", "phase", f"trained {result.steps} steps{processes_phrase(summary)} at "
                f"{result.tokens_per_second:.0f} tokens/s; train loss {result.train_loss:.3f}, "
                f"val loss {result.val_loss or float('nan'):.3f}",
                **summary.model_dump(include={"steps", "tokens_per_second", "train_loss", "val_loss", "processes",
                                              "distributed", "distributed_backend", "device"}))
    return {"training": summary, "round": round_number}
