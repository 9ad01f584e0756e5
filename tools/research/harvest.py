"""Harvest: search each planned source query by query until its quota is met, fetch each new hit, and
store it with its provenance in the job's documents folder; failures are recorded per item, not raised.
Remote sources share one HTTP client whose cache lives in `<home>/http-cache/`, so a repeated job makes
no network request.

Crawled text is data: nothing here reads a document's text to decide anything (no link
following, no instructions taken from it); the text is only measured and written to disk.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tools.events import EventLog
from tools.intake.query_expansion import arrange_queries, expand_queries
from tools.research.planning import SEARCHED, ResearchRequest, SourcePlan
from tools.sources.base import Source
from tools.sources.documents import Document, Reference, SourceError
from tools.sources.http import NetworkUnavailable
from tools.sources.pubmed_source import PubMedSource
from tools.sources.registry import SourcesSettings, build_http, build_source

NO_NETWORK_HINT = ("try: --docs PATH with documents on the subject, or run again when online "
                   "(answers already fetched are served from the cache)")


@dataclass
class Harvest:
    """What searching one source gave: stored documents' provenance, skips, and the search story."""

    documents: list[dict[str, Any]] = field(default_factory=list)
    skipped: list[dict[str, Any]] = field(default_factory=list)
    searches: list[dict[str, Any]] = field(default_factory=list)
    unreachable: str = ""  # why the source's host could not be reached at all


def queries_for(source: Source, request: ResearchRequest, harvest: Harvest,
                planned: tuple[str, ...] = ()) -> list[str]:
    """Search queries for one source: the expanded subject, or the chat model's `planned` queries
    (with PubMed's MeSH terms for PubMed)."""
    mesh: list[str] = []
    if isinstance(source, PubMedSource):
        try:
            mesh = source.translate(request.subject).mesh_terms()
        except NetworkUnavailable:
            raise
        except SourceError as error:  # MeSH only sharpens the queries; go on without it
            harvest.skipped.append(skip_record(error.what, f"MeSH translation failed: {error.reason}"))
    queries = (arrange_queries(request.subject, planned, mesh_terms=mesh, max_queries=request.max_queries)
               if planned else expand_queries(request.subject, mesh_terms=mesh, max_queries=request.max_queries))
    return list(dict.fromkeys([*queries, *request.extra_queries]))


def store_document(document: Document, folder: Path) -> dict[str, Any]:
    """Write the document as JSON in the job's documents folder; its provenance, path and size."""
    path = folder / f"{document.doc_id}.json"
    path.write_text(json.dumps(document.to_dict(), ensure_ascii=False))
    return {**document.provenance(), "path": str(path), "chars": len(document.text)}


def harvest_source(source: Source, plan: SourcePlan, request: ResearchRequest, known: set[str], folder: Path,
                   events: EventLog) -> Harvest:
    """Search one source query by query until its quota is met; every failure is recorded, not raised."""
    harvest = Harvest()
    try:
        searched = source.name in SEARCHED
        queries = queries_for(source, request, harvest, plan.queries) if searched else [request.subject]
        for query in queries:
            if len(harvest.documents) >= plan.quota:
                break
            _search_and_fetch(source, query, plan.quota - len(harvest.documents), known, folder, events, harvest,
                              lambda: events.progress("researcher", f"documents from {source.name}",
                                                      min(len(harvest.documents), plan.quota), plan.quota))
    except NetworkUnavailable as error:
        harvest.unreachable = error.reason
        harvest.skipped.append(skip_record(source.name, f"no network: {error.reason}"))
    found = len(harvest.documents)
    events.progress("researcher", f"documents from {source.name}", found, found)  # done, quota met or not
    return harvest


def _search_and_fetch(source: Source, query: str, limit: int, known: set[str], folder: Path,
                      events: EventLog, harvest: Harvest, fetched: Callable[[], None] = lambda: None) -> None:
    """One query: search, then fetch and store each new hit (`fetched` after each). NetworkUnavailable
    propagates."""
    try:
        references = source.search(query, limit)
    except NetworkUnavailable:
        raise
    except SourceError as error:
        harvest.skipped.append(skip_record(error.what, error.reason))
        events.emit("researcher", "skip", f"{source.name} search {query!r} failed: {error.reason}")
        return
    report = getattr(source, "last_report", None)
    harvest.searches.append({"query": query, "returned": len(references),
                             "total": getattr(report, "total", None), "reason": getattr(report, "reason", "")})
    harvest.skipped.extend(skip_record(f"{source.name}:{native_id}", reason)
                           for native_id, reason in getattr(report, "skipped", ()))
    for reference in references:
        tried = _doc_id(reference)
        if tried in known:
            continue
        known.add(tried)  # tried once per pass, whether it works or not
        try:
            document = source.fetch(reference)
        except NetworkUnavailable:
            raise
        except SourceError as error:  # named by the item, whatever request inside the source failed
            harvest.skipped.append({**skip_record(f"{source.name}:{reference.native_id}", error.reason),
                                    "request": error.what})
            events.emit("researcher", "skip", f"skipped {source.name}:{reference.native_id}: {error.reason}")
            continue
        if document.doc_id != tried and document.doc_id in known:
            continue  # e.g. a Wikipedia redirect to a page already stored
        known.add(document.doc_id)
        harvest.documents.append(store_document(document, folder))
        fetched()


def _doc_id(reference: Reference) -> str:
    """The id the fetched document will have (Document.doc_id is the one definition)."""
    return Document(reference.source, reference.native_id, "", "", "").doc_id


def skip_record(what: str, reason: str) -> dict[str, Any]:
    """One skipped item as the job records it: what, why, and that the researcher skipped it."""
    return {"what": what, "reason": reason, "phase": "researcher"}


def harvest_all(plans: list[SourcePlan], request: ResearchRequest, settings: SourcesSettings, known: set[str],
                folder: Path, events: EventLog
                ) -> tuple[Harvest, list[tuple[SourcePlan, Harvest]], dict[str, int]]:
    """Every planned source through one cached HTTP client: the combined harvest, each built source's
    plan and harvest, and the client's cache hits/misses and network requests."""
    total, by_source = Harvest(), []
    with build_http(settings) as http:
        for plan in plans:
            try:
                source = build_source(plan.name, settings, http=http)
            except SourceError as error:
                total.skipped.append(skip_record(plan.name, error.reason))
                continue
            harvest = harvest_source(source, plan, request, known, folder, events)
            events.emit("researcher", "decision", f"{plan.name}: {len(harvest.documents)} documents from "
                        f"{len(harvest.searches)} searches, {len(harvest.skipped)} skipped")
            total.documents += harvest.documents
            total.skipped += harvest.skipped
            by_source.append((plan, harvest))
        return total, by_source, vars(http.stats).copy()


def network_off_notice(offline: list[str]) -> dict[str, Any]:
    """The skip that says network access is off, which sources it leaves out, and what to try."""
    return skip_record("no network", f"network access is off (FTAGENT_NETWORK=0), so {', '.join(offline)}"
                       f" cannot be searched; {NO_NETWORK_HINT}")


def no_network_notice(by_source: list[tuple[SourcePlan, Harvest]]) -> dict[str, Any] | None:
    """One skip that says the network is down and what to try, when no source could be reached."""
    unreachable = [(plan, harvest) for plan, harvest in by_source if harvest.unreachable]
    if not unreachable:
        return None
    names = ", ".join(plan.name for plan, _ in unreachable)
    return skip_record("no network", f"cannot reach {names} ({unreachable[0][1].unreachable}); {NO_NETWORK_HINT}")
