"""curator: chunk by tokens (the embedder's tokenizer), drop low-quality and other-language text, score
every chunk against the subject and its expanded queries, drop off-topic documents, irrelevant and
near-duplicate chunks, keep the top-k, and store what is kept (with embeddings and provenance) in the
vector store. Every chunk's scores and keep/drop reason go to jobs/<id>/curation/chunks.jsonl."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from langgraph.runtime import Runtime

from graphs.context import JobContext
from graphs.spec import JobSpec
from graphs.state import CurationSummary, DroppedDocument, JobState
from tools.data.chunking import Chunk, TokenCounter, chunk_by_tokens, tokenizer_counter
from tools.data.dataset import write_jsonl
from tools.data.dedup import find_duplicates
from tools.data.quality import detect_language, text_problem
from tools.intake.query_expansion import expand_queries
from tools.sources.documents import Document
from tools.stores.vector_store import ChunkStore


@dataclass
class Curated:
    """Every chunk with its scores and fate; `kept` indexes into `chunks` in store order."""

    chunks: list[Chunk]
    vectors: np.ndarray
    relevance: np.ndarray
    queries: list[str]
    document_relevance: dict[str, float]
    off_topic: set[str]
    reasons: list[str]  # per chunk: "kept" or why it was dropped
    languages: list[tuple[str, float]] = field(default_factory=list)

    @property
    def kept(self) -> list[int]:
        return [i for i, reason in enumerate(self.reasons) if reason == "kept"]


def relevance_queries(spec: JobSpec) -> list[str]:
    """The subject, its expanded queries and a descriptive variant: a chunk is relevant when it is
    close to any of them."""
    expanded = expand_queries(spec.subject, max_queries=spec.curation.max_queries)
    return list(dict.fromkeys([spec.subject, *expanded, f"{spec.subject}: definitions, methods and results"]))


def select_chunks(documents: Sequence[Document], spec: JobSpec, embedder: Any,
                  count_tokens: TokenCounter, progress: Callable[[int, int], None] | None = None) -> Curated:
    """Chunk, filter, score and de-duplicate; pure apart from the embedder (`progress`: chunks embedded)."""
    cfg = spec.curation
    chunks = [c for doc in documents
              for c in chunk_by_tokens(doc, cfg.chunk_tokens, cfg.overlap_tokens, cfg.min_chunk_words, count_tokens)]
    texts = [c.text for c in chunks]
    vectors = embedder.embed(texts, progress=progress) if progress else embedder.embed(texts)
    queries = relevance_queries(spec)
    scores = (vectors @ embedder.embed(queries).T).max(axis=1) if len(chunks) else np.zeros(0)
    doc_scores = document_scores(chunks, scores)
    off_topic = {d for d, s in doc_scores.items() if s < cfg.doc_relevance_threshold}
    languages = [detect_language(c.text) for c in chunks]
    reasons = [_first_problem(c, s, lang, d in off_topic, spec)
               for c, s, lang, d in zip(chunks, scores, languages, (c.doc_id for c in chunks), strict=True)]
    _mark_duplicates(chunks, reasons, cfg.near_duplicate_threshold)
    _mark_beyond_top_k(scores, reasons, cfg.max_chunks)
    return Curated(chunks, vectors, scores, queries, doc_scores, off_topic, reasons, languages)


def _first_problem(chunk: Chunk, score: float, language: tuple[str, float], off_topic: bool,
                   spec: JobSpec) -> str:
    cfg = spec.curation
    wanted = cfg.language or spec.language
    if problem := text_problem(chunk.text, cfg.min_chunk_words, cfg.max_symbol_ratio, cfg.max_garbage_ratio):
        return problem
    if language[0] != wanted and language[1] >= cfg.min_language_probability:
        return f"language {language[0]} (want {wanted})"
    if off_topic:
        return "off-topic document"
    if score < cfg.chunk_relevance_threshold:
        return "chunk below relevance threshold"
    return "kept"


def _mark_duplicates(chunks: Sequence[Chunk], reasons: list[str], threshold: float) -> None:
    """MinHash near-duplicates across documents among the chunks still kept (the first copy stays)."""
    alive = [i for i, r in enumerate(reasons) if r == "kept"]
    for position, (_, kind) in find_duplicates([chunks[i].text for i in alive], threshold).items():
        reasons[alive[position]] = f"{kind} duplicate"


def _mark_beyond_top_k(scores: np.ndarray, reasons: list[str], top_k: int) -> None:
    alive = sorted((i for i, r in enumerate(reasons) if r == "kept"), key=lambda i: -float(scores[i]))
    for index in alive[top_k:]:
        reasons[index] = "beyond top-k"


def document_scores(chunks: Sequence[Chunk], scores: np.ndarray) -> dict[str, float]:
    """A document's relevance: the mean of its three best chunks (robust to one stray paragraph)."""
    per_doc: dict[str, list[float]] = {}
    for chunk, score in zip(chunks, scores, strict=True):
        per_doc.setdefault(chunk.doc_id, []).append(float(score))
    best = {d: sorted(s, reverse=True)[:3] for d, s in per_doc.items()}
    return {d: sum(top) / len(top) for d, top in best.items()}


def chunk_rows(curated: Curated, documents: Sequence[Document]) -> list[dict[str, Any]]:
    """One row per chunk for chunks.jsonl: scores, language, and why it was kept or dropped."""
    titles = {d.doc_id: d.title for d in documents}
    rows = []
    for index, chunk in enumerate(curated.chunks):
        language, probability = curated.languages[index]
        rows.append({"chunk_id": chunk.chunk_id, "doc_id": chunk.doc_id, "title": titles.get(chunk.doc_id, ""),
                     "heading": chunk.heading, "words": len(chunk.text.split()),
                     "relevance": round(float(curated.relevance[index]), 4),
                     "document_relevance": round(curated.document_relevance[chunk.doc_id], 4),
                     "language": language, "language_probability": round(probability, 3),
                     "kept": curated.reasons[index] == "kept", "reason": curated.reasons[index],
                     "text": chunk.text})
    return rows


def curation_summary(curated: Curated, documents: Sequence[Document], spec: JobSpec,
                     collection: str, rows_path: Path) -> CurationSummary:
    """What the state keeps: counts by reason, dropped documents, the thresholds used."""
    by_id = {d.doc_id: d for d in documents}
    kept = curated.kept
    reasons = Counter(r for r in curated.reasons if r != "kept")
    return CurationSummary(
        collection=collection,
        documents_in=len(documents),
        documents_kept=len({curated.chunks[i].doc_id for i in kept}),
        documents_dropped=[DroppedDocument(doc_id=d, title=by_id[d].title, reason="off-topic",
                                           relevance=round(curated.document_relevance[d], 4))
                           for d in sorted(curated.off_topic)],
        document_relevance={by_id[d].title: round(s, 4) for d, s in curated.document_relevance.items()},
        chunks_in=len(curated.chunks),
        chunks_kept=len(kept),
        dropped_chunks=dict(reasons),
        kept_chunks_by_source=dict(Counter(by_id[curated.chunks[i].doc_id].source for i in kept)),
        queries=curated.queries,
        chunk_scores=str(rows_path),
        chunking="tokens of the embedding model's tokenizer",
        thresholds=spec.curation.model_dump(),
    )


def curate_chunks(state: JobState, runtime: Runtime[JobContext]) -> dict:
    spec = state["spec"]
    events = runtime.context.events(state["job_id"])
    documents = [Document.from_dict(json.loads(Path(d["path"]).read_text())) for d in state.get("documents", [])]
    embedder = runtime.context.embedder
    curated = select_chunks(documents, spec, embedder, tokenizer_counter(str(embedder.model_path)),
                            events.ticker("curator", "embedding chunks"))
    rows_path = runtime.context.paths(state["job_id"]).curation_rows
    write_jsonl(rows_path, chunk_rows(curated, documents))
    _store(curated, documents, runtime, _collection_name(state["job_id"]))
    summary = curation_summary(curated, documents, spec, _collection_name(state["job_id"]), rows_path)
    events.emit("curator", "phase", f"kept {summary.chunks_kept} of {summary.chunks_in} chunks from "
                f"{summary.documents_kept} documents; dropped {len(curated.off_topic)} off-topic documents",
                dropped_documents=[d.model_dump() for d in summary.documents_dropped],
                dropped_chunks=summary.dropped_chunks)
    return {"curation": summary}


def _store(curated: Curated, documents: Sequence[Document], runtime: Runtime[JobContext], collection: str) -> None:
    by_id = {d.doc_id: d for d in documents}
    kept = curated.kept
    store = ChunkStore(runtime.context.settings.chroma, collection)
    store.clear()
    store.add([curated.chunks[i] for i in kept], curated.vectors[kept],
              [{**_flat(by_id[curated.chunks[i].doc_id].provenance()), "relevance": float(curated.relevance[i])}
               for i in kept])


def _collection_name(job_id: str) -> str:
    return f"job-{job_id}"[:60]


def _flat(provenance: dict) -> dict:
    """Chroma metadata values must be scalars."""
    return {k: v if isinstance(v, str | int | float | bool) else str(v) for k, v in provenance.items()}
