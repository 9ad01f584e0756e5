"""The dataset card: dataset/README.md with counts by source, type and difficulty, why examples were
dropped, length histograms (PNG) and a few random examples."""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from tools.data.examples import Example
from tools.hub_cards import dataset_configs, front_matter


def length_histograms(examples: Sequence[Example], folder: Path) -> list[Path]:
    """question_lengths.png and answer_lengths.png (words per example)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    paths = []
    for field in ("question", "answer"):
        lengths = [len(getattr(e, field).split()) for e in examples]
        figure, axis = plt.subplots(figsize=(5, 3))
        axis.hist(lengths or [0], bins=20, color="#4472c4")
        axis.set_xlabel(f"{field} length (words)")
        axis.set_ylabel("examples")
        figure.tight_layout()
        path = folder / f"{field}_lengths.png"
        figure.savefig(path, dpi=80)
        plt.close(figure)
        paths.append(path)
    return paths


def _table(title: str, counts: Mapping[str, int]) -> list[str]:
    rows = [f"### {title}", "", "| value | count |", "|---|---|"]
    rows += [f"| {key} | {count} |" for key, count in sorted(counts.items(), key=lambda kv: -kv[1])]
    return rows + ([] if counts else ["| — | 0 |"]) + [""]


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _mix_section(summary: Mapping[str, Any]) -> list[str]:
    """The training mix (QA rows and document rows) and how many rows teach each fact."""
    mix, coverage = summary.get("mix") or {}, summary.get("coverage") or {}
    if not mix:
        return []
    lines = ["## The training mix", "",
             f"- QA rows (chat, loss on the answer): {mix.get('qa', 0)}"
             + (f" ({summary['repeated_questions']} of them second passes of the questions about a whole "
                "document or section)" if summary.get("repeated_questions") else ""),
             *([("- a study's sentence questions not trained (its findings and section questions teach those "
                 f"sentences; they stay in validation and test): {summary['sentence_questions_left_out']}")]
               if summary.get("sentence_questions_left_out") else []),
             (f"- document rows (the passages as text, loss on every token): {mix.get('document', 0)} "
             f"({summary.get('document_passages', 0)} passages; {mix.get('document_share', 0):.0%} of the "
             "training rows)"),
             f"- curated text: {summary.get('kept_words', 0)} words", ""]
    if coverage:
        qa, rows = coverage.get("qa_rows_per_fact", {}), coverage.get("rows_per_fact", {})
        lines += [f"### Coverage of the {coverage.get('facts', 0)} facts (sentences, list and table rows)", "",
                  "| rows teaching a fact | facts (QA rows) | facts (QA + document rows) |", "|---|---|---|"]
        lines += [f"| {b} | {qa.get(b, 0)} | {rows.get(b, 0)} |" for b in ("0", "1", "2", "3+")]
        lines.append("")
    return lines


def card_text(subject: str, splits: Mapping[str, Sequence[Example]], summary: Mapping[str, Any],
              seed: int = 0, shown: int = 10) -> str:
    """The card's Markdown (pure: the same data and seed give the same card)."""
    examples = [e for split in splits.values() for e in split]
    lines = [f"# Dataset: {subject}", "",
             (f"{len(examples)} question/answer examples written by the `{summary.get('generator')}` generator "
             "from the curated chunks, each checked against its source chunk by the quality gate."), "",
             "| split | examples | documents |", "|---|---|---|"]
    lines += [f"| {name} | {len(items)} | {len({e.doc_id for e in items})} |" for name, items in splits.items()]
    lines += ["", ("Files: `<split>.jsonl` (chat messages), `<split>.alpaca.jsonl`, `<split>.sharegpt.jsonl`; "
              "`train.documents.jsonl` (document rows, `{\"text\": ...}`)."), ""]
    lines += _mix_section(summary)
    lines += ["## Counts", ""]
    lines += _table("By source document", Counter(e.source for e in examples))
    lines += _table("By question type", Counter(e.type for e in examples))
    lines += _table("By difficulty", Counter(e.metadata.get("difficulty", "?") for e in examples))
    lines += ["## What was dropped", ""]
    lines += _table("Examples", summary.get("dropped_examples", {}))
    lines += _table("Generator failures", summary.get("generator_stats", {}))
    lines += ["## Lengths", "", "![question lengths](question_lengths.png)",
              "![answer lengths](answer_lengths.png)", "", f"## {min(shown, len(examples))} random examples", "",
              "| type | difficulty | score | question | answer |", "|---|---|---|---|---|"]
    for e in random.Random(seed).sample(examples, min(shown, len(examples))):
        lines.append(f"| {e.type} | {e.metadata.get('difficulty', '?')} | {e.quality_score:.2f} | "
                     f"{_cell(e.question)} | {_cell(e.answer)} |")
    return "\n".join(lines) + "\n"


def card_metadata(folder: Path) -> dict[str, Any]:
    """`configs:` front matter: one config per format with its splits (chat is the default), and the
    document rows as a config of their own, so `datasets.load_dataset(folder)` never mixes formats."""
    formats = {"chat": "{split}.jsonl", "alpaca": "{split}.alpaca.jsonl", "sharegpt": "{split}.sharegpt.jsonl"}
    files = {fmt: {split: pattern.format(split=split) for split in ("train", "val", "test")
                   if (folder / pattern.format(split=split)).exists()} for fmt, pattern in formats.items()}
    if (folder / "train.documents.jsonl").exists():
        files["documents"] = {"train": "train.documents.jsonl"}
    return {"configs": dataset_configs({k: v for k, v in files.items() if v}), "tags": ["ftagent", "synthetic"]}


def write_dataset_card(folder: Path, subject: str, splits: Mapping[str, Sequence[Example]],
                       summary: Mapping[str, Any], seed: int = 0) -> Path:
    """Write README.md (with `configs:` front matter) and the length histograms into the dataset folder;
    returns the card's path."""
    folder.mkdir(parents=True, exist_ok=True)
    length_histograms([e for split in splits.values() for e in split], folder)
    path = folder / "README.md"
    path.write_text(front_matter(card_metadata(folder)) + "\n" + card_text(subject, splits, summary, seed),
                    encoding="utf-8")
    return path
