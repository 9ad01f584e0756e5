"""curator: chunk, filter, score and select the documents' text (tools/data/curation.py does the
selection), and store what is kept (with embeddings and provenance) in the vector store. Every
chunk's scores and keep/drop reason go to jobs/<id>/curation/chunks.jsonl. This node reads the job
spec for the selection and writes the CurationSummary."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

from langgraph.runtime import Runtime

from graphs.context import JobContext
from graphs.spec import JobSpec
from graphs.state import CurationSummary, DroppedDocument, JobState
from tools.data.chunking import tokenizer_counter
from tools.data.curation import Curated, CurationPolicy, chunk_rows, select_chunks
from tools.data.dataset import write_jsonl
from tools.sources.documents import Document
from tools.stores.vector_store import ChunkStore


def curation_policy(spec: JobSpec) -> CurationPolicy:
    """The selection's knobs from the spec: its curation section, the subject, the language to keep."""
    cfg = spec.curation
    return CurationPolicy(subject=spec.subject, language=cfg.language or spec.language,
                          **cfg.model_dump(exclude={"language"}))


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
    curated = select_chunks(documents, curation_policy(spec), embedder, tokenizer_counter(str(embedder.model_path)),
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
