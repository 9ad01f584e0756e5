"""import_dataset: the user's own dataset replaces research, curation and generation. It is read and
validated (intake already refused a bad one), split when it came unsplit, written into the job's dataset
folder in the job format with a card, and handed to the same trainer, evaluator, critic and deployer."""

from __future__ import annotations

from pathlib import Path

from langgraph.runtime import Runtime

from graphs.context import JobContext
from graphs.state import DatasetSummary, JobState, OwnDataset
from tools.data.dataset import SPLITS, dataset_hash, write_jsonl
from tools.data.user_dataset import UserDataset, read_user_dataset, with_system_prompt
from tools.hub_cards import dataset_configs, front_matter
from tools.llm.prompt_files import render_prompt


def write_user_splits(folder: Path, dataset: UserDataset, system_prompt: str) -> dict[str, Path]:
    """<split>.jsonl for every split, each row with the job's system prompt when it had none."""
    paths = {split: folder / f"{split}.jsonl" for split in SPLITS}
    for split, path in paths.items():
        write_jsonl(path, [with_system_prompt(r, system_prompt) for r in dataset.splits[split]])
    return paths


def user_dataset_card(subject: str, dataset: UserDataset, paths: dict[str, Path]) -> str:
    """README.md: `configs:` front matter (datasets reads the splits) and where the rows came from."""
    files = {"chat": {split: path.name for split, path in paths.items() if dataset.splits[split]}}
    metadata = {"configs": dataset_configs(files), "tags": ["ftagent", "user-provided"]}
    split_note = "as it came" if dataset.had_splits else "split here by row (seeded)"
    lines = [f"# Dataset: {subject}", "", (f"The user's own dataset `{dataset.source}` ({dataset.format}; "
             f"rows per format {dataset.formats}), {split_note}, in chat-messages JSONL."), "",
             "| split | rows |", "|---|---|", *[f"| {s} | {len(dataset.splits[s])} |" for s in SPLITS]]
    return front_matter(metadata) + "\n" + "\n".join(lines) + "\n"


def import_dataset(state: JobState, runtime: Runtime[JobContext]) -> dict:
    spec = state["spec"]
    events = runtime.context.events(state["job_id"])
    dataset = read_user_dataset(spec.dataset or "", spec.generation.seed)
    folder = runtime.context.paths(state["job_id"]).dataset
    system_prompt = render_prompt("system_subject_expert", subject=spec.subject)
    paths = write_user_splits(folder, dataset, system_prompt)
    card = folder / "README.md"
    card.write_text(user_dataset_card(spec.subject, dataset, paths), encoding="utf-8")
    own = OwnDataset(path=dataset.source, format=dataset.format, formats=dataset.formats, rows=dataset.rows,
                     had_splits=dataset.had_splits)
    summary = DatasetSummary(
        own_dataset=own, paths={k: str(v) for k, v in paths.items()}, exports={},
        counts={k: len(dataset.splits[k]) for k in SPLITS}, types={"own": dataset.rows},
        hash=dataset_hash([paths[name] for name in SPLITS]), system_prompt=system_prompt, card=str(card))
    events.emit("dataset", "phase", f"research and generation skipped: training on your dataset "
                f"{dataset.source} ({dataset.format}, {dataset.rows} rows; " +
                ", ".join(f"{k} {v}" for k, v in summary.counts.items()) + ")", **own.model_dump())
    return {"dataset": summary}
