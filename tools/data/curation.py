"""Curation's selection: chunk by tokens (the embedder's tokenizer), drop low-quality and other-language
text, score every chunk against the subject and its expanded queries, drop off-topic documents,
irrelevant and near-duplicate chunks, and keep the top-k. Every chunk's scores and keep/drop reason
become a row of jobs/<id>/curation/chunks.jsonl (`chunk_rows`)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from tools.data.chunking import Chunk, TokenCounter, chunk_by_tokens
from tools.data.dedup import find_duplicates
from tools.data.quality import detect_language, text_problem
from tools.intake.query_expansion import expand_queries
from tools.sources.documents import Document


@dataclass(frozen=True)
class CurationPolicy:
    """The subject and the knobs of selection (the job spec's curation section, read by the curator
    node); chunk sizes are in the embedding model's tokens."""

    subject: str
    language: str  # ISO 639-1 code of the text to keep
    chunk_tokens: int
    overlap_tokens: int
    min_chunk_words: int
    min_language_probability: float
    doc_relevance_threshold: float
    chunk_relevance_threshold: float
    max_chunks: int  # top-k: the most relevant chunks kept
    max_queries: int  # expanded queries relevance is scored against
    near_duplicate_threshold: float
    max_symbol_ratio: float
    max_garbage_ratio: float


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


def relevance_queries(subject: str, max_queries: int) -> list[str]:
    """The subject, its expanded queries and a descriptive variant: a chunk is relevant when it is
    close to any of them."""
    expanded = expand_queries(subject, max_queries=max_queries)
    return list(dict.fromkeys([subject, *expanded, f"{subject}: definitions, methods and results"]))


def select_chunks(documents: Sequence[Document], policy: CurationPolicy, embedder: Any,
                  count_tokens: TokenCounter, progress: Callable[[int, int], None] | None = None) -> Curated:
    """Chunk, filter, score and de-duplicate; pure apart from the embedder (`progress`: chunks embedded)."""
    chunks = [c for doc in documents for c in chunk_by_tokens(doc, policy.chunk_tokens, policy.overlap_tokens,
                                                              policy.min_chunk_words, count_tokens)]
    texts = [c.text for c in chunks]
    vectors = embedder.embed(texts, progress=progress) if progress else embedder.embed(texts)
    queries = relevance_queries(policy.subject, policy.max_queries)
    scores = (vectors @ embedder.embed(queries).T).max(axis=1) if len(chunks) else np.zeros(0)
    doc_scores = document_scores(chunks, scores)
    off_topic = {d for d, s in doc_scores.items() if s < policy.doc_relevance_threshold}
    languages = [detect_language(c.text) for c in chunks]
    reasons = [_first_problem(c, s, lang, d in off_topic, policy)
               for c, s, lang, d in zip(chunks, scores, languages, (c.doc_id for c in chunks), strict=True)]
    _mark_duplicates(chunks, reasons, policy.near_duplicate_threshold)
    _mark_beyond_top_k(scores, reasons, policy.max_chunks)
    return Curated(chunks, vectors, scores, queries, doc_scores, off_topic, reasons, languages)


def _first_problem(chunk: Chunk, score: float, language: tuple[str, float], off_topic: bool,
                   policy: CurationPolicy) -> str:
    if problem := text_problem(chunk.text, policy.min_chunk_words, policy.max_symbol_ratio,
                               policy.max_garbage_ratio):
        return problem
    if language[0] != policy.language and language[1] >= policy.min_language_probability:
        return f"language {language[0]} (want {policy.language})"
    if off_topic:
        return "off-topic document"
    if score < policy.chunk_relevance_threshold:
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
