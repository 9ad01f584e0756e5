"""evaluator: tuned vs base on the held-out test split, general text and general questions; the LLM judge
grades the generated answers when a chat model is configured; applies the gates; writes the report (JSON +
Markdown) with its plots next to it."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from langgraph.runtime import Runtime

from graphs.context import JobContext, RunSettings
from graphs.gates import check_gates, judge_gates
from graphs.nodes.tracking import round_trackers
from graphs.reports import write_evaluation_report
from graphs.spec import Evaluation, Gates, JobSpec
from graphs.state import (
    EvaluationResult,
    GateCheck,
    JobState,
    RoundDataset,
    RoundRecord,
    TrainingSummary,
)
from tools.data.dataset import read_jsonl
from tools.evaluation.plots import write_plots
from tools.evaluation.scoring import (
    Comparison,
    compare_with_base,
    general_qa,
    general_texts,
    record_passage,
)
from tools.events import EventLog
from tools.llm.chat_model import chat_model_from
from tools.llm.judge import Judgement, absent_judgement, judge_answers
from tools.llm.prompt_files import render_prompt
from tools.stores.vector_store import ChunkStore
from tools.training.tracking import RoundTrackers

if TYPE_CHECKING:
    from langchain_openai import ChatOpenAI

JUDGE_OFF = "judge turned off (evaluation.judge is false)"


def compare(spec: JobSpec, training: TrainingSummary, test: list[dict], threads: int | None,
            events: EventLog | None = None, precision: str = "auto") -> Comparison:
    """The job's comparison within spec.evaluation's limits, in `precision` (see `inference_dtype`;
    generation is the expensive part; its progress goes to the events' listeners)."""
    questions = general_qa(render_prompt("system_general"), spec.evaluation.general_qa)
    return compare_with_base(
        training.base_model_path, training.adapter_dir, test, general_texts(spec.evaluation.general_texts),
        spec.evaluation.max_new_tokens, spec.evaluation.generate_limit, threads, questions,
        spec.generation.max_answer_words, precision,
        progress=(lambda side: events.ticker("evaluator", f"evaluating {side}: answers")) if events else None)


def write_report(folder: Path, round_number: int, evaluation: EvaluationResult, comparison: Comparison) -> Path:
    """Plots, then the report that links them (report.json holds the round and the evaluation)."""
    stem = f"round-{round_number}"
    plots = write_plots(folder, stem, evaluation.base, evaluation.tuned, comparison.per_example)
    content = {"round": round_number, **evaluation.model_dump(exclude={"report"})}
    return write_evaluation_report(folder, content, comparison.per_example, plots, comparison.general_per_example)


def judge_comparison(chat: ChatOpenAI | None, enabled: bool, comparison: Comparison,
                     passages: list[str | None]) -> Judgement:
    """The judge's grades of the generated answers (rows of `comparison.per_example`, which gain the judge
    columns); absent when the judge is off or no chat model is configured."""
    judgement = judge_answers(chat, comparison.per_example, passages) if enabled else absent_judgement(JUDGE_OFF)
    comparison.per_example = judgement.annotate(comparison.per_example)
    return judgement


def job_passages(state: JobState, settings: RunSettings, records: list[dict]) -> list[str | None]:
    """Each record's source passage: its chunk's text from the job's chunk store (metadata.chunk_id), else
    the passage the record carries, else None."""
    collection = curation.collection if (curation := state.get("curation")) else None
    ids = [(r.get("metadata") or {}).get("chunk_id") for r in records]
    texts = ChunkStore(settings.chroma, collection).texts([i for i in ids if i]) if collection else {}
    return [texts.get(chunk_id) or record_passage(r) for chunk_id, r in zip(ids, records, strict=True)]


def evaluate_model(state: JobState, runtime: Runtime[JobContext]) -> dict:
    spec = state["spec"]
    settings, events = runtime.context.settings, runtime.context.events(state["job_id"])
    training, round_number = state["training"], state["round"]
    test = read_jsonl(state["dataset"].paths["test"])
    events.emit("evaluator", "phase", f"round {round_number}: comparing tuned and base on "
                f"{len(test)} held-out examples and {spec.evaluation.general_qa} general questions")
    comparison = compare(spec, training, test, settings.threads, events,
                         settings.precision_for(spec.training.precision))
    chat = chat_model_from(settings) if spec.evaluation.judge else None
    passages = job_passages(state, settings, test[: len(comparison.per_example)]) if chat else []
    judgement = judge_comparison(chat, spec.evaluation.judge, comparison, passages)
    events.emit("evaluator", "judge", f"LLM judge: {judgement.summary['reason']}", **judgement.summary)
    base, tuned = comparison.base.to_dict(), comparison.tuned.to_dict() if comparison.tuned else {}
    gates = [GateCheck.model_validate(gate) for gate in
             check_gates(base, tuned, spec.gates) + judge_gates(judgement.summary, spec.gates)]
    evaluation = EvaluationResult(base=base, tuned=tuned, judge=judgement.summary, gates=gates,
                                  passed=all(gate.passed for gate in gates))
    report = write_report(runtime.context.paths(state["job_id"]).eval, round_number, evaluation, comparison)
    evaluation = evaluation.model_copy(update={"report": str(report)})
    track_evaluation(round_trackers(settings, spec, runtime.context.paths(state["job_id"]), state["job_id"],
                                    round_number, events, create=False), training, base, tuned)
    for gate in gates:
        events.emit("evaluator", "gate", f"{'PASS' if gate.passed else 'FAIL'} {gate.name}: {gate.detail}",
                    **gate.model_dump())
    if "answer_rouge_l" not in {gate.name for gate in gates}:
        events.emit("evaluator", "decision", f"grounding gate not judged: {tuned.get('generated', 0)} generated "
                    f"answers, it needs {spec.gates.min_rouge_l_answers} (evaluation.generate_limit)")
    return {"evaluation": evaluation, "rounds": [round_record(state, evaluation)]}


def track_evaluation(run: RoundTrackers, training: TrainingSummary, base: dict[str, Any],
                     tuned: dict[str, Any]) -> None:
    """The round's metrics, base and tuned, into its TensorBoard (and MLflow) run, at its last training step."""
    try:
        run.evaluation(int(training.steps or 0), base, tuned)
    finally:
        run.close()


def round_record(state: JobState, evaluation: EvaluationResult) -> RoundRecord:
    """What the job report shows per round: the training config and data it used (so the critic's
    changes between rounds are visible), the losses, tuned vs base metrics and every gate."""
    training, dataset = state["training"], state.get("dataset")
    used = RoundDataset(counts=dataset.counts, hash=dataset.hash) if dataset else RoundDataset()
    return RoundRecord(
        round=state["round"], dataset=used,
        **training.model_dump(include={"config", "steps", "train_loss", "val_loss", "val_history", "replay_general",
                                       "replay_examples", "train_examples", "document_rows", "processes",
                                       "distributed", "distributed_backend"}),
        **evaluation.model_dump(include={"base", "tuned", "judge", "gates", "passed"}))


def evaluate_on_set(base_model_path: str, adapter_dir: str | None, records: list[dict], folder: Path,
                    settings: Evaluation, gates: Gates, threads: int | None = None,
                    title: str = "Evaluation", max_answer_words: int = 150,
                    judge: ChatOpenAI | None = None, precision: str = "auto",
                    progress: Callable[[str], Callable[[int, int], None]] | None = None) -> dict[str, Any]:
    """Any model (adapter on its base, or a plain model) on any question/answer records: the same
    comparison, judge, gates and report as a job's evaluator, written to `folder` (report.json/.md + plots).
    `judge` is the configured chat model (None: no judge); records' metadata.passage reaches it."""
    questions = general_qa(render_prompt("system_general"), settings.general_qa)
    comparison = compare_with_base(base_model_path, adapter_dir, records, general_texts(settings.general_texts),
                                   settings.max_new_tokens, settings.generate_limit, threads, questions,
                                   max_answer_words, precision, progress)
    judgement = judge_comparison(judge, settings.judge, comparison, [record_passage(r) for r in records])
    base, tuned = comparison.base.to_dict(), comparison.tuned.to_dict() if comparison.tuned else None
    checked = check_gates(base, tuned, gates) + judge_gates(judgement.summary, gates) if tuned else []
    evaluation = {"round": 0, "base": base, "tuned": tuned, "judge": judgement.summary, "gates": checked,
                  "passed": all(g["passed"] for g in checked) if checked else None}
    plots = write_plots(folder, "eval", base, tuned, comparison.per_example)
    report = write_evaluation_report(folder, evaluation, comparison.per_example, plots,
                                     comparison.general_per_example, stem="report", title=title)
    return {**evaluation, "report": str(report), "report_json": str(folder / "report.json"),
            "plots": [str(p) for p in plots], "per_example": comparison.per_example,
            "general_per_example": comparison.general_per_example}
