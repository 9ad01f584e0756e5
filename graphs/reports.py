"""Reports a person reads: the evaluation report, the job report and the model card (Markdown + JSON)."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from graphs.state import (
    DatasetSummary,
    GateCheck,
    JobState,
    RemedyRecord,
    ResearchResult,
    RoundRecord,
    TrainingSummary,
)
from tools.stores.model_registry import ModelVersion


def _fmt(value: Any, digits: int = 3) -> str:
    return "—" if value is None else (f"{value:.{digits}f}" if isinstance(value, float) else str(value))


def _setting(value: Any) -> str:
    """A spec value as a person wrote it: 0.0015, 0.1, 16, None."""
    return f"{value:g}" if isinstance(value, float) else str(value)


def write_evaluation_report(folder: Path, evaluation: dict[str, Any], per_example: list[dict],
                            plots: Sequence[Path] = (), general_per_example: Sequence[dict] = (),
                            stem: str | None = None, title: str | None = None) -> Path:
    """`<stem>.json` + `<stem>.md` (default stem report-round-N, also copied to report.json/.md): metrics,
    gates, linked plots (PNG files in the same folder), the per-example tables (held-out and general)."""
    folder.mkdir(parents=True, exist_ok=True)
    round_number = evaluation["round"]
    stem = stem or f"report-round-{round_number}"
    data = json.dumps({**evaluation, "per_example": per_example, "general_per_example": list(general_per_example),
                       "plots": [Path(p).name for p in plots]}, indent=2)
    lines = [f"# {title or f'Evaluation, round {round_number}'}", "",
             metrics_table(evaluation["base"], evaluation.get("tuned") or {}), ""]
    if judge := evaluation.get("judge"):
        lines += ["## LLM judge", "", *judge_lines(judge), ""]
    lines += ["## Gates", ""] + [f"- {'PASS' if g['passed'] else 'FAIL'} `{g['name']}`: {g['detail']}"
                                 for g in evaluation["gates"]]
    if plots:
        lines += ["", "## Plots", ""] + [f"![{Path(p).stem}]({Path(p).name})" for p in plots]
    lines += ["", "## Examples (held-out)", ""] + example_table(per_example)
    if general_per_example:
        lines += ["", "## General questions (regression check)", ""] + example_table(general_per_example)
    text = "\n".join(lines) + "\n"
    (folder / f"{stem}.json").write_text(data)
    (folder / f"{stem}.md").write_text(text)
    if stem.startswith("report-round-"):
        (folder / "report.json").write_text(data)
        (folder / "report.md").write_text(text)
    return folder / f"{stem}.md"


def example_table(rows: Sequence[dict]) -> list[str]:
    """Markdown rows: question, reference, base and tuned answers with their ROUGE-L and format problems."""
    def cell(text: Any) -> str:
        return str(text).replace("|", "\\|").replace("\n", " ")[:160]

    def answer(row: dict, who: str) -> str:
        if f"{who}_answer" not in row:
            return "—"
        problems = "; ".join(row.get(f"{who}_format") or [])
        return (f"{cell(row[f'{who}_answer'])} (R-L {_fmt(row.get(f'{who}_rouge_l'), 2)}"
                + (f"; format: {problems}" if problems else "") + ")")

    judged = any(key.startswith("judge_") for row in rows for key in row)
    lines = ["| question | reference | base | tuned |" + (" judge (correctness/grounding) |" if judged else ""),
             "|---|---|---|---|" + ("---|" if judged else "")]
    lines += [f"| {cell(row['question'])} | {cell(row['reference'])} | {answer(row, 'base')} | "
              f"{answer(row, 'tuned')} |" + (f" {cell(judge_cell(row))} |" if judged else "") for row in rows[:20]]
    return lines


def judge_cell(row: dict) -> str:
    """'base 2/3, tuned 5/4' (correctness/grounding, 1-5) or 'unjudged: why'."""
    if row.get("judge_error"):
        return f"unjudged: {row['judge_error']}"
    return ", ".join(f"{who} {row[f'judge_{who}_correctness']}/{row[f'judge_{who}_grounding']}"
                     for who in ("base", "tuned") if f"judge_{who}_correctness" in row)


def judge_lines(judge: dict[str, Any]) -> list[str]:
    """The LLM judge in a report: mean grades per model, tuned vs base, and how many examples it graded
    (or why there is no judge)."""
    if judge.get("status") == "absent":
        return [f"No judge: {judge['reason']}."]
    lines = [f"Judge `{judge.get('model')}`: {judge['reason']}. Rubric: {judge['rubric']}."]
    if scores := judge.get("scores"):
        base, tuned = scores.get("base", {}), scores.get("tuned", {})
        lines += ["", "| judge, mean of 1-5 | base | tuned |", "|---|---|---|"]
        lines += [f"| {aspect} | {_fmt(base.get(aspect), 2)} | {_fmt(tuned.get(aspect), 2)} |"
                  for aspect in ("correctness", "grounding", "score")]
    if pairs := judge.get("pairwise"):
        lines += ["", (f"Tuned vs base: {pairs['wins']} wins, {pairs['ties']} ties, {pairs['losses']} losses of "
                       f"{pairs['pairs']} (win rate {pairs['win_rate']:.0%}, ties count half).")]
    return lines


def metrics_table(base: dict[str, Any], tuned: dict[str, Any]) -> str:
    rows = ["| metric | base | tuned |", "|---|---|---|"]
    for key, label in (("answer_nll", "answer NLL (lower is better)"), ("token_f1", "token F1"),
                       ("rouge_l", "ROUGE-L"), ("exact_match", "exact match"),
                       ("format_compliance", "format compliance"), ("general_qa_f1", "general QA token F1"),
                       ("general_qa_rouge_l", "general QA ROUGE-L"),
                       ("general_perplexity", "general perplexity")):
        if key not in base and key not in tuned and key.startswith(("format", "general_qa")):
            continue
        rows.append(f"| {label} | {_fmt(base.get(key))} | {_fmt(tuned.get(key))} |")
    return "\n".join(rows)


_SOURCE_NOUNS = {"pubmed": ("PubMed abstract", "PubMed abstracts"), "arxiv": ("arXiv paper", "arXiv papers"),
                 "wikipedia": ("Wikipedia article", "Wikipedia articles"), "web": ("web page", "web pages"),
                 "local": ("local document", "local documents")}


def sources_summary(documents: list[dict[str, Any]], kept_titles: set[str] | None = None) -> str:
    """'42 PubMed abstracts, 17 arXiv papers and 3 Wikipedia articles: A, B, C …'."""
    counts = Counter(d["source"] for d in documents)
    parts = [f"{n} {_SOURCE_NOUNS.get(source, (source + ' document', source + ' documents'))[n != 1]}"
             for source, n in counts.most_common()]
    parts = [", ".join(parts[:-1]) + " and " + parts[-1]] if len(parts) > 1 else parts
    titles = ", ".join(d["title"] for d in documents[:6]) + (" …" if len(documents) > 6 else "")
    return f"{' and '.join(parts)}: {titles}" if documents else "no documents"


ROUND_METRICS = (("answer_nll", "answer NLL"), ("rouge_l", "ROUGE-L"), ("general_perplexity", "general perplexity"),
                 ("general_qa_f1", "general QA F1"))


def gate_line(gate: GateCheck, indent: str = "") -> str:
    return f"{indent}- {'PASS' if gate.passed else 'FAIL'} `{gate.name}`: {gate.detail}"


def rounds_section(state: JobState) -> list[str]:
    """Every round in order: how it was trained, its metrics and gates; after it, each critic decision
    with why (the failed gates), what changed (spec values before → after) and the gates before → after
    in the next round. Decisions taken before any round (too little data) come first."""
    rounds = {record.round: record for record in state.get("rounds", [])}
    remedies: dict[int, list[RemedyRecord]] = {}
    for remedy in state.get("remedies", []):
        remedies.setdefault(remedy.after_round, []).append(remedy)
    lines = ["## Rounds", ""]
    for number in sorted(set(rounds) | set(remedies)):
        record = rounds.get(number)
        lines += round_lines(record) if record else []
        for remedy in remedies.get(number, []):
            lines += remedy_lines(remedy, record, rounds.get(number + 1))
    return lines


def round_lines(record: RoundRecord) -> list[str]:
    failed = [g.name for g in record.gates if not g.passed]
    verdict = "passed" if record.passed else f"failed ({', '.join(failed)})"
    metrics = "; ".join(f"{label} {_fmt(record.base.get(key))} → {_fmt(record.tuned.get(key))}"
                        for key, label in ROUND_METRICS if record.base.get(key) is not None)
    return [f"- round {record.round}: gates {verdict}", f"  - {training_summary(record)}",
            f"  - train loss {_fmt(record.train_loss)}, val loss {_fmt(record.val_loss)}",
            f"  - base → tuned: {metrics}", *[gate_line(g, "  ") for g in record.gates]]


def training_summary(record: RoundRecord) -> str:
    """'trained 4 steps: LoRA r=16, lr=0.003, epochs=2, dropout=0.05; 40 examples incl. 4 replayed general (10%);
    dataset {...} hash 1a2b…'."""
    config = record.config
    lora = (f"LoRA r={config['lora_r']}, lr={config['learning_rate']:g}, epochs={config['epochs']:g}, "
            f"dropout={config['lora_dropout']:g}")
    data = (f"{_fmt(record.train_examples)} examples incl. {record.replay_examples} replayed "
            f"general ({record.replay_general:.0%}) and {record.document_rows} document rows; "
            f"dataset {record.dataset.counts} hash "
            f"{str(record.dataset.hash)[:12]}")
    return f"trained {_fmt(record.steps)} steps{processes_phrase(record)}: {lora}; {data}"


def processes_phrase(training: TrainingSummary | RoundRecord) -> str:
    """' on 2 processes (ddp, gloo)' for a multi-process run, '' for one process."""
    if training.processes <= 1:
        return ""
    return f" on {training.processes} processes ({training.distributed}, {training.distributed_backend})"


def remedy_lines(remedy: RemedyRecord, before: RoundRecord | None, after: RoundRecord | None) -> list[str]:
    """The decision (nested under its round, or on its own before round 1) and its effect."""
    indent = "  " if before else ""
    head = (f"{indent}- critic" if before else f"- before round {remedy.after_round + 1}: critic")
    measured = remedy.metrics_before  # the training example count before any round, else the failed gates
    why = (f"{measured.train_examples} training examples, fewer than the gate needs"
           if measured.train_examples is not None else f"failed gates {', '.join(measured.failed_gates)}")
    changes = ", ".join(f"{key} {_setting(remedy.before.get(key))} → {_setting(value)}"
                        for key, value in remedy.changes.items())
    lines = [f"{head}: {remedy.reason} (chosen by {remedy.chosen_by})",
             f"{indent}  - why: {why}",
             f"{indent}  - changed {remedy.section}: {changes}; back to {remedy.route}"]
    if before and after:
        lines.append(f"{indent}  - gates before → after (round {after.round}): " + "; ".join(
            gate_change(gate, after) for gate in before.gates))
    elif before:
        lines.append(f"{indent}  - no later round was evaluated")
    return lines


def gate_change(gate: GateCheck, after: RoundRecord) -> str:
    """'general_perplexity 0.134 FAIL → 0.037 PASS' (value as the gate measures it)."""
    later = next((g for g in after.gates if g.name == gate.name), None)
    verdict = {True: "PASS", False: "FAIL"}
    return f"{gate.name} {_fmt(gate.value)} {verdict[gate.passed]} → " + (
        f"{_fmt(later.value)} {verdict[later.passed]}" if later else "not judged")


def research_lines(research: ResearchResult) -> list[str]:
    """Which sources were searched and why, with what queries, and how much came from the HTTP cache."""
    lines = [f"- {s.source}: {s.documents} of {s.quota} documents ({s.reason}); queries: "
             + (", ".join(repr(q["query"]) for q in s.searches) or "none") for s in research.sources]
    if http := research.http:
        lines.append(f"- HTTP: {http['cache_hits']} answers from the cache, {http['network_requests']} "
                     f"network requests (cache in {research.cache})")
    return lines


def own_dataset_lines(dataset: DatasetSummary | None) -> list[str]:
    """The job trained on the user's own dataset: say so, and that research and generation were skipped."""
    own = dataset.own_dataset if dataset else None
    if not own:
        return []
    split = "its own splits" if own.had_splits else "split here by row"
    return [(f"- research, curation and generation skipped: trained on your dataset {own.path} "
             f"({own.format}, {own.rows} rows, {split})")]


def trained_on(state: JobState) -> str:
    own = dataset.own_dataset if (dataset := state.get("dataset")) else None
    if own:
        return f"the user's own dataset {Path(own.path).name} ({own.format}, {own.rows} rows)"
    return sources_summary(state.get("documents", []))


def job_report(state: JobState) -> str:
    """The whole job on one page: documents, data, training, metrics, gates, rounds, the model."""
    lines = [f"# Job {state['job_id']}", "", f"Request: {state.get('request', '')}", "",
             *intake_lines(state), f"Outcome: {state.get('outcome', '')}", "", "## Documents", "",
             *documents_lines(state), *dataset_lines(state.get("dataset"))]
    if evaluation := state.get("evaluation"):
        lines += ["", "## Final evaluation", "", metrics_table(evaluation.base, evaluation.tuned), ""]
        if judge := evaluation.judge:
            lines += judge_lines(judge) + [""]
        lines += [gate_line(g) for g in evaluation.gates]
    if state.get("rounds") or state.get("remedies"):
        lines += [""] + rounds_section(state)
    if model := state.get("model"):
        lines += ["", "## Model", "", f"- name: {model.name} (status {model.status})",
                  f"- adapter: {model.adapter_path}", f"- card: {model.card_path}"]
    return "\n".join(lines) + "\n"


def intake_lines(state: JobState) -> list[str]:
    """How the request was understood, and where the readers disagreed."""
    if not (intake := state.get("intake")):
        return []
    return [f"Understood: {intake.understood} (read by the {intake.read_by})", "",
            *[f"- the readers disagree on {d}" for d in intake.disagreements],
            *([""] if intake.disagreements else [])]


def documents_lines(state: JobState) -> list[str]:
    """Documents read, kept and dropped; what was skipped; the research and curation behind it."""
    curation = state.get("curation")
    kept = curation.documents_kept if curation else 0
    lines = [f"- read: {len(state.get('documents', []))}; kept after curation: {kept}"]
    if curation:
        lines += [f"- dropped as off-topic: {d.title} (relevance {d.relevance})" for d in curation.documents_dropped]
    lines += [f"- skipped: {s['what']}: {s['reason']}" for s in state.get("skipped", [])]
    lines += research_lines(state["research"]) if state.get("research") else []
    lines += own_dataset_lines(state.get("dataset"))
    if curation:
        lines += [(f"- chunks kept {curation.chunks_kept} of {curation.chunks_in}; dropped: "
                   f"{curation.dropped_chunks or 'none'}")]
    return lines


def dataset_lines(dataset: DatasetSummary | None) -> list[str]:
    if not dataset:
        return []
    lines = ["", "## Dataset", "", f"- examples per split: {dataset.counts}; types: {dataset.types}",
             f"- dataset hash {dataset.hash}; files in {Path(dataset.paths['train']).parent}"]
    if dataset.generator is not None:
        lines.append(f"- generator {dataset.generator}: {dataset.generated} written, kept "
                     f"{sum(dataset.counts.values())}; dropped: {dataset.dropped_examples or 'none'}; "
                     f"failures: {dataset.generator_stats or 'none'}; card: {dataset.card or None}")
    return lines


def model_card(state: JobState, model: ModelVersion) -> str:
    """The prose card of a version the deployer registers (the job has trained and evaluated it)."""
    training, evaluation, dataset = state["training"], state["evaluation"], state["dataset"]
    config = training.config
    lines = [
        f"# {model.name}", "",
        (f"A LoRA adapter on **{model.base_model}** tuned on **{state['spec'].subject}** by ftagent "
         f"(job {state['job_id']}, round {model.round})."), "",
        f"- status: {model.status} (quality gates {'passed' if model.gates_passed else 'FAILED'})",
        f"- trained on {trained_on(state)}",
        f"- dataset: {dataset.counts} examples, hash {dataset.hash}",
        (f"- training: LoRA r={config.get('lora_r')}, alpha={config.get('lora_alpha')}, "
         f"lr={config.get('learning_rate')}, epochs={config.get('epochs')}, {training.steps} steps, "
         f"{training.precision} on {training.device}{processes_phrase(training)}"),
        f"- train loss {_fmt(training.train_loss)}, val loss {_fmt(training.val_loss)}", "",
        "## Evaluation (held-out documents)", "",
        metrics_table(evaluation.base, evaluation.tuned), "",
        *[gate_line(g) for g in evaluation.gates],
        "", *rounds_section(state), "",
        "## Use", "", f"`ftagent ask {model.name} \"your question\"`", "",
        "## Limits", "", ("Answers were trained to quote the source documents; the model knows only what they "
                          "say and may state it wrongly. Check anything that matters against the sources."),
    ]
    return "\n".join(lines) + "\n"
