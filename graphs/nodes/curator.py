"""curator: chunk, score relevance to the subject, drop off-topic documents, short and duplicate
chunks, and store what is kept (with embeddings and provenance) in the vector store."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

from langgraph.runtime import Runtime

from graphs.context import JobContext
from graphs.nodes.common import effective_spec
from graphs.state import JobState
from tools.chunking import chunk_document
from tools.dedup import find_duplicates
from tools.documents import Document
from tools.embeddings import relevance
from tools.vector_store import ChunkStore


def curate_chunks(state: JobState, runtime: Runtime[JobContext]) -> dict:
    spec = effective_spec(state)
    events = runtime.context.events(state["job_id"])
    documents = [Document.from_dict(json.loads(Path(d["path"]).read_text())) for d in state.get("documents", [])]
    chunks = [c for doc in documents for c in chunk_document(doc, spec.curation.chunk_words, spec.curation.min_chunk_words)]
    embedder = runtime.context.embedder
    vectors = embedder.embed([c.text for c in chunks])
    query_vectors = embedder.embed([spec.subject, f"{spec.subject}: definitions, methods and results"])
    scores = relevance(vectors, query_vectors)

    doc_scores = _document_scores(chunks, scores)
    off_topic = {d for d, s in doc_scores.items() if s < spec.curation.doc_relevance_threshold}
    reasons: Counter[str] = Counter()
    keep = []
    for index, chunk in enumerate(chunks):
        if chunk.doc_id in off_topic:
            reasons["off-topic document"] += 1
        elif len(chunk.text.split()) < spec.curation.min_chunk_words:
            reasons["too short"] += 1
        elif scores[index] < spec.curation.chunk_relevance_threshold:
            reasons["chunk below relevance threshold"] += 1
        else:
            keep.append(index)
    duplicates = find_duplicates([chunks[i].text for i in keep], spec.curation.near_duplicate_threshold)
    for position, (_, kind) in duplicates.items():
        reasons[f"{kind} duplicate"] += 1
    keep = [i for position, i in enumerate(keep) if position not in duplicates]

    by_id = {d.doc_id: d for d in documents}
    store = ChunkStore(runtime.context.settings.home / "chroma", _collection_name(state["job_id"]))
    store.clear()
    store.add([chunks[i] for i in keep], vectors[keep],
              [{**_flat(by_id[chunks[i].doc_id].provenance()), "relevance": float(scores[i])} for i in keep])
    dropped_documents = [
        {"doc_id": d, "title": by_id[d].title, "relevance": round(doc_scores[d], 4), "reason": "off-topic"}
        for d in sorted(off_topic)]
    summary = {
        "collection": _collection_name(state["job_id"]),
        "documents_in": len(documents),
        "documents_kept": len({chunks[i].doc_id for i in keep}),
        "documents_dropped": dropped_documents,
        "document_relevance": {by_id[d].title: round(s, 4) for d, s in doc_scores.items()},
        "chunks_in": len(chunks),
        "chunks_kept": len(keep),
        "dropped_chunks": dict(reasons),
        "thresholds": spec.curation.model_dump(),
    }
    events.emit("curator", "phase", f"kept {len(keep)} of {len(chunks)} chunks from "
                f"{summary['documents_kept']} documents; dropped {len(off_topic)} off-topic documents",
                dropped_documents=dropped_documents, dropped_chunks=dict(reasons))
    return {"curation": summary}


def _document_scores(chunks, scores) -> dict[str, float]:
    """A document's relevance: the mean of its three best chunks (robust to one stray paragraph)."""
    per_doc: dict[str, list[float]] = {}
    for chunk, score in zip(chunks, scores, strict=True):
        per_doc.setdefault(chunk.doc_id, []).append(float(score))
    best = {d: sorted(s, reverse=True)[:3] for d, s in per_doc.items()}
    return {d: sum(top) / len(top) for d, top in best.items()}


def _collection_name(job_id: str) -> str:
    return f"job-{job_id}"[:60]


def _flat(provenance: dict) -> dict:
    """Chroma metadata values must be scalars."""
    return {k: v if isinstance(v, str | int | float | bool) else str(v) for k, v in provenance.items()}
