"""generator: extractive question/answer examples from the stored chunks, split by source document,
written as chat-messages JSONL."""

from __future__ import annotations

from collections import Counter

from langgraph.runtime import Runtime

from graphs.context import JobContext
from graphs.nodes.common import effective_spec
from graphs.state import JobState
from tools.dataset import SPLITS, dataset_hash, split_by_document, to_chat_record, write_jsonl
from tools.dedup import find_duplicates
from tools.prompts import render_prompt
from tools.qa_extractive import Example, generate_examples
from tools.vector_store import ChunkStore


def generate_dataset(state: JobState, runtime: Runtime[JobContext]) -> dict:
    spec = effective_spec(state)
    events = runtime.context.events(state["job_id"])
    store = ChunkStore(runtime.context.settings.home / "chroma", state["curation"]["collection"])
    examples: list[Example] = []
    chunks_without_questions = 0
    for chunk, meta in store.all():
        made = generate_examples(chunk, meta.get("title", ""), spec.generation.max_per_chunk,
                                 spec.generation.min_quality, spec.generation.allow_cloze)
        chunks_without_questions += not made
        examples += made
    generated = len(examples)
    duplicates = find_duplicates([f"{e.question} {e.answer}" for e in examples], threshold=0.9)
    examples = [e for i, e in enumerate(examples) if i not in duplicates][: spec.budget.max_examples]
    splits = split_by_document(examples, seed=spec.generation.seed)
    system_prompt = render_prompt("system_subject_expert", subject=spec.subject)
    folder = runtime.context.paths(state["job_id"]).dataset
    paths = {}
    for name in SPLITS:
        paths[name] = folder / f"{name}.jsonl"
        write_jsonl(paths[name], [to_chat_record(e, system_prompt) for e in splits[name]])
    summary = {
        "paths": {k: str(v) for k, v in paths.items()},
        "counts": {k: len(v) for k, v in splits.items()},
        "documents_per_split": {k: len({e.doc_id for e in v}) for k, v in splits.items()},
        "types": dict(Counter(e.type for e in examples)),
        "generated": generated,
        "duplicates_removed": len(duplicates),
        "chunks_without_questions": chunks_without_questions,
        "hash": dataset_hash(list(paths.values())),
        "system_prompt": system_prompt,
    }
    events.emit("generator", "phase", "examples: " + ", ".join(f"{k} {v}" for k, v in summary["counts"].items()),
                types=summary["types"], duplicates_removed=len(duplicates))
    return {"dataset": summary}
