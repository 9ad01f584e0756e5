"""researcher: find documents, extract their text, keep provenance; failures are recorded per item."""

from __future__ import annotations

import json

from langgraph.runtime import Runtime

from graphs.context import JobContext
from graphs.nodes.common import effective_spec
from graphs.state import JobState
from tools.documents import SourceError
from tools.sources.local import LocalFolderSource


def gather_documents(state: JobState, runtime: Runtime[JobContext]) -> dict:
    spec = effective_spec(state)
    events = runtime.context.events(state["job_id"])
    folder = runtime.context.paths(state["job_id"]).documents
    folder.mkdir(parents=True, exist_ok=True)
    known = {d["doc_id"] for d in state.get("documents", [])}
    documents, skipped = [], []
    if "local" in spec.sources and not spec.docs_path:
        skipped.append({"what": "local", "reason": "no documents folder given (--docs PATH)", "phase": "researcher"})
    sources = [LocalFolderSource(spec.docs_path)] if spec.docs_path and "local" in spec.sources else []
    for source in sources:
        try:
            references = source.search(spec.subject, spec.budget.max_documents)
        except SourceError as error:
            skipped.append({"what": error.what, "reason": error.reason, "phase": "researcher"})
            continue
        events.emit("researcher", "decision", f"{source.name}: {len(references)} candidate documents")
        for reference in references:
            try:
                document = source.fetch(reference)
            except SourceError as error:
                skipped.append({"what": error.what, "reason": error.reason, "phase": "researcher"})
                events.emit("researcher", "skip", f"skipped {reference.native_id}: {error.reason}")
                continue
            if document.doc_id in known:
                continue
            path = folder / f"{document.doc_id}.json"
            path.write_text(json.dumps(document.to_dict(), ensure_ascii=False))
            known.add(document.doc_id)
            documents.append({**document.provenance(), "path": str(path), "chars": len(document.text)})
    events.emit("researcher", "phase", f"{len(documents)} documents read, {len(skipped)} skipped",
                skipped=skipped)
    return {"documents": documents, "skipped": skipped}
