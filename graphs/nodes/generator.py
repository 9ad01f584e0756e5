"""generator: the training mix. Draw the stored chunks for coverage (subtopic clusters × documents),
write QA rows with the chosen generator (extractive | llm | local), pass each through the question and
example gates, cap cloze items, split the QA rows by source document; add document rows (the passages
themselves, for continued pretraining) to the training set in the configured share; write chat JSONL
(+ Alpaca, ShareGPT), the document rows and the dataset card with the coverage of every fact."""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Callable
from typing import Any

import numpy as np
from langgraph.runtime import Runtime

from graphs.context import JobContext
from graphs.spec import JobSpec
from graphs.state import DatasetSummary, JobState
from tools.data.chunking import Chunk
from tools.data.coverage import coverage_order
from tools.data.dataset import SPLITS, dataset_hash, split_by_document, write_splits
from tools.data.dataset_card import write_dataset_card
from tools.data.document_rows import DocumentRow, document_rows, mix
from tools.data.examples import Example
from tools.data.facts import fact_coverage
from tools.data.generators import Generator, GeneratorUnavailable, make_generator
from tools.data.qa_extractive import document_context
from tools.data.quality import GateConfig, gate_examples, verbatim_span
from tools.llm.prompt_files import render_prompt
from tools.stores.vector_store import ChunkStore, stored_vectors


def gate_config(spec: JobSpec) -> GateConfig:
    g = spec.generation
    return GateConfig(min_lexical_support=g.min_lexical_support, min_semantic_support=g.min_semantic_support,
                      keep_score=g.keep_quality, review_score=g.min_quality, max_answer_words=g.max_answer_words)


def choose_generator(spec: JobSpec, runtime: Runtime[JobContext]) -> tuple[Generator, str]:
    """The spec's generator, or the extractive one (with the reason) when it cannot run here."""
    settings, g = runtime.context.settings, spec.generation
    local_path = None
    if g.generator == "local":
        from tools.models.catalogue import resolve_base_model

        local_path = str(resolve_base_model(spec.base_model, settings.home))
    try:
        return make_generator(g.generator, subject=spec.subject, min_quality=g.min_quality,
                              allow_cloze=g.allow_cloze, max_per_fact=g.max_per_fact, chat_model=settings.chat_model,
                              chat_base_url=settings.chat_base_url, chat_api_key=settings.chat_api_key,
                              retries=g.llm_retries, timeout_s=g.llm_timeout_s, local_model_path=local_path,
                              max_new_tokens=g.local_max_new_tokens), ""
    except GeneratorUnavailable as error:
        return make_generator("extractive", subject=spec.subject, min_quality=g.min_quality,
                              allow_cloze=g.allow_cloze, max_per_fact=g.max_per_fact), \
            f"{error}; used the extractive generator"


def draw_chunks(rows: list[tuple[Chunk, dict]], vectors: np.ndarray, spec: JobSpec) -> list[int]:
    """Indices of the chunks to generate from, in coverage order (a prefix when max_chunks is set)."""
    order = coverage_order([c.doc_id for c, _ in rows], vectors, [float(m.get("relevance", 0)) for _, m in rows],
                           seed=spec.generation.seed)
    return order[: spec.generation.max_chunks] if spec.generation.max_chunks else order


def synthesise(generator: Generator, chunks: list[tuple[Chunk, str]], max_per_chunk: int,
               progress: Callable[[int, int], None] | None = None) -> list[Example]:
    """Run the generator over (chunk, source title) pairs in the given order, each chunk with its
    document's context (how the study is named, its own questions, where its findings are);
    `progress(done, total)` after each chunk."""
    by_document: dict[str, list[Chunk]] = defaultdict(list)
    for chunk, _ in chunks:
        by_document[chunk.doc_id].append(chunk)
    titles = {chunk.doc_id: title for chunk, title in chunks}
    contexts = {doc_id: document_context(members, titles[doc_id]) for doc_id, members in by_document.items()}
    examples: list[Example] = []
    for done, (chunk, title) in enumerate(chunks, start=1):
        examples += generator.generate(chunk, title, max_per_chunk, contexts[chunk.doc_id])
        if progress is not None:
            progress(done, len(chunks))
    return examples


def answer_support(embedder: Any, examples: list[Example], chunk_vectors: dict[str, np.ndarray],
                   sources: dict[str, str]) -> list[float | None]:
    """Cosine of each answer's embedding with its chunk's stored embedding; None for an answer that is its
    chunk's text word for word, which the gate takes as grounded whatever an embedding says (on the demo
    job most extractive answers are: embedding them all was 8.5 s of its 11 s of generation)."""
    measured = [i for i, e in enumerate(examples) if not verbatim_span(e.answer, sources[e.chunk_id])]
    support: list[float | None] = [None] * len(examples)
    if measured:
        answers = embedder.embed([examples[i].answer for i in measured])
        chunks = np.stack([chunk_vectors[examples[i].chunk_id] for i in measured])
        for i, cosine in zip(measured, np.einsum("ij,ij->i", answers, chunks), strict=True):
            support[i] = float(cosine)
    return support


def cap_form(examples: list[Example], form: str, max_share: float) -> tuple[list[Example], int]:
    """At most `max_share` of the QA rows are of this form (the lowest-scoring go first); how many went."""
    members = [i for i, e in enumerate(examples) if e.type == form]
    others = len(examples) - len(members)
    cap = int(max_share * others / (1 - max_share)) if max_share < 1 else len(members)
    if len(members) <= cap:
        return examples, 0
    keep = set(sorted(members, key=lambda i: -examples[i].quality_score)[:cap])
    return [e for i, e in enumerate(examples) if e.type != form or i in keep], len(members) - cap


DOCUMENT_FORMS = frozenset({"findings", "section", "heading"})  # questions about a whole document or section


def trim_sentence_questions(train: list[Example], keep: int | None) -> tuple[list[Example], int]:
    """The training split with at most `keep` sentence-level questions (the best-scored) per document whose
    findings are asked (None: all): a study's findings and section questions already teach its sentences.
    Documents without a findings question keep all of theirs. Also how many were left out."""
    if keep is None:
        return train, 0
    studies = {e.doc_id for e in train if e.type == "findings"}
    sentence = [i for i, e in enumerate(train) if e.doc_id in studies and e.type not in DOCUMENT_FORMS]
    ranked = sorted(sentence, key=lambda i: -train[i].quality_score)
    kept, per_document = set(), Counter()
    for i in ranked:
        if per_document[train[i].doc_id] < keep:
            per_document[train[i].doc_id] += 1
            kept.add(i)
    left_out = set(sentence) - kept
    return [e for i, e in enumerate(train) if i not in left_out], len(left_out)


def repeat_document_questions(train: list[Example], times: int) -> list[Example]:
    """The training split with each question about a whole document or section `times` times (in place):
    such a question, a study's findings above all, is what a reader most asks of the document."""
    return [e for e in train for _ in range(times if e.type in DOCUMENT_FORMS else 1)]


def training_documents(chunks: list[tuple[Chunk, str]], splits: dict[str, list[Example]], qa_train: int,
                       spec: JobSpec) -> tuple[list[DocumentRow], int]:
    """The document rows of the training set (repeated toward the configured share) and how many distinct
    passages they hold."""
    g = spec.generation
    if g.document_share <= 0:
        return [], 0
    held_out = {e.doc_id for name in ("val", "test") for e in splits[name]}
    chosen = [(c, t) for c, t in chunks if g.documents_from == "all" or c.doc_id not in held_out]
    rows = document_rows(chosen)
    return mix(rows, qa_train, g.document_share, g.max_document_repeats), len(rows)


def llm_rewrites(spec: JobSpec, runtime: Runtime[JobContext], chunks: list[tuple[Chunk, str]],
                 events: Any) -> tuple[list[DocumentRow], list[Example], dict[str, int]]:
    """Grounded rewrites and QA pairs from the configured chat model (none without one, or when it fails:
    the offline rows stand alone, and the events say why)."""
    settings, g = runtime.context.settings, spec.generation
    if g.rewrites == "off" or not settings.chat_model or not chunks:
        return [], [], {}
    from tools.data.rewrites import RewriteGenerator

    generator = RewriteGenerator(settings.chat_model, settings.chat_base_url, settings.chat_api_key, spec.subject,
                                 rewrites_per_chunk=g.rewrites_per_chunk, max_concurrency=g.rewrite_concurrency,
                                 timeout_s=g.llm_timeout_s, retries=g.llm_retries)
    result = generator.run(chunks)
    if result.endpoint_failed:
        events.emit("generator", "decision", f"rewrites: the chat model failed ({result.endpoint_reason}); "
                    "the offline generator's rows stand alone", stats=dict(result.stats))
    rows = [DocumentRow(r.text, r.chunk_id, r.doc_id, "rewrite", r.source, {"style": r.style, "support": r.support})
            for r in result.rewrites]
    return rows, result.examples, dict(result.stats)


def generate_dataset(state: JobState, runtime: Runtime[JobContext]) -> dict:
    spec = state["spec"]
    events = runtime.context.events(state["job_id"])
    collection = state["curation"].collection
    rows = ChunkStore(runtime.context.settings.chroma, collection).all()
    vectors = stored_vectors(runtime.context.settings.chroma, collection, [c.chunk_id for c, _ in rows])
    drawn = draw_chunks(rows, vectors, spec) if rows else []
    generator, fallback = choose_generator(spec, runtime)
    if fallback:
        events.emit("generator", "decision", fallback)
    chunks = [(rows[i][0], rows[i][1].get("title", "")) for i in drawn]
    examples = synthesise(generator, chunks, spec.generation.max_per_chunk,
                          events.ticker("generator", f"generating QA ({generator.name})"))
    rewrites, rewrite_examples, rewrite_stats = llm_rewrites(spec, runtime, chunks, events)
    examples += rewrite_examples
    chunk_vectors = {rows[i][0].chunk_id: vectors[i] for i in drawn}
    sources = {rows[i][0].chunk_id: rows[i][0].text for i in drawn}
    kept, dropped = gate_examples(examples, sources, answer_support(runtime.context.embedder, examples, chunk_vectors,
                                                                    sources),
                                  gate_config(spec), max_share=spec.generation.max_type_share)
    # yes/no first: the cloze cap is a share of what is left
    for form, share in (("yes_no", spec.generation.max_yes_no_share), ("cloze", spec.generation.max_cloze_share)):
        kept, over = cap_form(kept, form, share)
        if over:
            dropped[f"{form.replace('_', '/')} over its share"] += over
    if len(kept) > spec.budget.max_examples:
        dropped["over the example budget"] += len(kept) - spec.budget.max_examples
        kept = kept[: spec.budget.max_examples]  # coverage order: the prefix is still spread out
    kept_words = sum(len(c.text.split()) for c, _ in rows)
    summary = DatasetSummary.model_validate(_write(state, runtime, spec, kept, chunks, rewrites, {
        "generator": generator.name, "generator_fallback": fallback, "chunks_available": len(rows),
        "chunks_drawn": len(drawn), "generated": len(examples), "dropped_examples": dict(dropped),
        "generator_stats": dict(generator.stats), "kept_words": kept_words, "rewrite_stats": rewrite_stats,
        "yield": round(len(kept) / len(examples), 3) if examples else 0.0}))
    events.emit("generator", "phase", "QA rows: " + ", ".join(f"{k} {v}" for k, v in summary.counts.items())
                + f"; document rows {summary.document_rows} ({summary.document_passages} passages); "
                f"{kept_words} words kept", types=summary.types, dropped_examples=summary.dropped_examples,
                generator=generator.name, document_rows=summary.document_rows, kept_words=kept_words)
    return {"dataset": summary}


def _write(state: JobState, runtime: Runtime[JobContext], spec: JobSpec, kept: list[Example],
           chunks: list[tuple[Chunk, str]], rewrites: list[DocumentRow], summary: dict[str, Any]) -> dict[str, Any]:
    """Split by document, add the document rows, write every format and the card; the summary the state keeps."""
    splits = split_by_document(kept, seed=spec.generation.seed)
    splits["train"], left_out = trim_sentence_questions(splits["train"],
                                                         spec.generation.sentence_questions_per_study)
    questions = len(splits["train"])
    splits["train"] = repeat_document_questions(splits["train"], spec.generation.document_question_repeats)
    documents, passages = training_documents(chunks, splits, len(splits["train"]), spec)
    held_out = {e.doc_id for name in ("val", "test") for e in splits[name]}
    documents += [r for r in rewrites if spec.generation.documents_from == "all" or r.doc_id not in held_out]
    system_prompt = render_prompt("system_subject_expert", subject=spec.subject)
    folder = runtime.context.paths(state["job_id"]).dataset
    written = write_splits(folder, splits, system_prompt, [row.to_record() for row in documents])
    counts = {k: len(v) for k, v in splits.items()}
    summary = {
        **summary,
        "paths": {k: str(v) for k, v in written["chat"].items()},
        "documents_path": str(written["documents"]["train"]),
        "exports": {fmt: {k: str(v) for k, v in paths.items()} for fmt, paths in written.items()
                    if fmt not in ("chat", "documents")},
        "counts": counts,
        "document_rows": len(documents),
        "document_passages": passages,
        "train_rows": counts["train"] + len(documents),
        "repeated_questions": counts["train"] - questions,  # the questions about whole documents, again
        "sentence_questions_left_out": left_out,
        "rewrite_rows": sum(r.kind == "rewrite" for r in documents),
        "mix": {"qa": counts["train"], "document": len(documents),
                "document_share": round(len(documents) / max(1, counts["train"] + len(documents)), 3)},
        "documents_per_split": {k: len({e.doc_id for e in v}) for k, v in splits.items()},
        "types": dict(Counter(e.type for e in kept)),
        "difficulty": dict(Counter(e.metadata.get("difficulty") for e in kept)),
        "coverage": fact_coverage([c for c, _ in chunks], splits["train"], documents),
        "hash": dataset_hash([written["chat"][name] for name in SPLITS] + [written["documents"]["train"]]),
        "system_prompt": system_prompt,
    }
    summary["card"] = str(write_dataset_card(folder, spec.subject, splits, summary, spec.generation.seed))
    return summary
