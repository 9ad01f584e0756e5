"""researcher: find documents, extract their text, keep provenance; failures are recorded per item.

Which sources: the ones the spec names; with none named, local files when a folder was given,
the web source when URLs were given, and otherwise `choose_sources(subject)` (keyword policy,
with its shares of the document budget and its reason). Queries come from `expand_queries(subject)`, or
from the configured chat model (`plan_queries`: only the user's subject reaches it; any failure falls
back to expand_queries, and an event says which path was taken and why). Remote sources share one HTTP client
whose cache lives in `<home>/http-cache/`, so a repeated job makes no network request.

Crawled text is data: nothing here reads a document's text to decide anything (no link
following, no instructions taken from it); the text is only measured and written to disk.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from langgraph.runtime import Runtime

from graphs.context import JobContext, RunSettings
from graphs.spec import JobSpec
from graphs.state import JobState, ResearchResult, SourceHarvest
from tools.events import EventLog
from tools.intake.query_expansion import arrange_queries, choose_sources, expand_queries
from tools.llm.chat_model import chat_model_from, expand_queries_with_model
from tools.sources.arxiv_source import ArxivSettings
from tools.sources.base import Source
from tools.sources.documents import Document, Reference, SourceError
from tools.sources.http import HttpSettings, NetworkUnavailable, host_key
from tools.sources.names import REMOTE_SOURCES
from tools.sources.pubmed_source import PubMedSettings, PubMedSource
from tools.sources.registry import SourcesSettings, build_http, build_source
from tools.sources.web_source import WebSettings
from tools.sources.wikipedia_source import WikipediaSettings

REMOTE = REMOTE_SOURCES
NO_NETWORK_HINT = ("try: --docs PATH with documents on the subject, or run again when online "
                   "(answers already fetched are served from the cache)")


@dataclass(frozen=True)
class SourcePlan:
    """One source to search, its number of documents to gather, and why it was chosen."""

    name: str
    quota: int
    reason: str
    queries: tuple[str, ...] = ()  # the chat model's queries; empty = expand_queries(subject)


@dataclass
class Harvest:
    """What searching one source gave: stored documents' provenance, skips, and the search story."""

    documents: list[dict[str, Any]] = field(default_factory=list)
    skipped: list[dict[str, Any]] = field(default_factory=list)
    searches: list[dict[str, Any]] = field(default_factory=list)
    unreachable: str = ""  # why the source's host could not be reached at all


def plan_sources(spec: JobSpec) -> list[SourcePlan]:
    """The sources to search, best first, with their quota of `budget.max_documents` and a reason."""
    budget = spec.budget.max_documents
    named = list(dict.fromkeys([*spec.sources, *spec.research.extra_sources]))
    implied = [name for name, given in (("local", spec.docs_path), ("web", spec.urls)) if given]
    if not spec.sources and not implied:
        chosen = [(name, share, f"chosen for the subject: {why}") for name, share, why in choose_sources(spec.subject)]
        added = [name for name in named if name not in {c[0] for c in chosen}]
        scale = len(chosen) / (len(chosen) + len(added))  # each added source gets an equal slice
        chosen = [(name, share * scale, why) for name, share, why in chosen]
        chosen += [(name, 1 / (len(chosen) + len(added)), "added to widen the search") for name in added]
        return [SourcePlan(name, max(1, round(budget * share)), why) for name, share, why in chosen]
    plans = [SourcePlan(name, budget, "documents given by the user") for name in implied]
    searched = [name for name in named if name not in implied]
    for name in searched:
        quota = budget if name in ("local", "web") else max(1, round(budget / len(searched)))
        plans.append(SourcePlan(name, quota, "asked for in the job spec"))
    return plans


def sources_settings(settings: RunSettings, spec: JobSpec) -> SourcesSettings:
    """Source settings from the run settings (URLs, contact, NCBI identity) and the spec (language, URLs)."""
    arxiv = ArxivSettings(full_text=spec.research.arxiv_full_text,
                          **({"api_url": settings.arxiv_url} if settings.arxiv_url else {}))
    pubmed = PubMedSettings(email=settings.ncbi_email, api_key=settings.ncbi_api_key,
                            **({"base_url": settings.pubmed_url} if settings.pubmed_url else {}))
    wikipedia = WikipediaSettings(language=spec.language, api_url=settings.wikipedia_url)
    hosts = [arxiv.api_url, arxiv.pdf_url_template, pubmed.base_url, wikipedia.endpoint]
    pacing = ({host_key(url): settings.http_min_interval_s for url in hosts}
              if settings.http_min_interval_s is not None else {})
    http = HttpSettings(cache_dir=settings.http_cache, timeout_s=settings.http_timeout_s,
                        max_retries=settings.http_retries, backoff_base_s=settings.http_backoff_s,
                        per_host_min_interval=pacing,
                        max_body_bytes=int(settings.max_download_mb * 1024 * 1024),
                        **({"user_agent_contact": settings.http_contact} if settings.http_contact else {}))
    return SourcesSettings(http=http, arxiv=arxiv, pubmed=pubmed, wikipedia=wikipedia,
                           web=WebSettings(urls=tuple(spec.urls),
                                           public_only=not spec.allow_private_urls),
                           local_path=Path(spec.docs_path) if spec.docs_path else None)


def queries_for(source: Source, spec: JobSpec, harvest: Harvest, planned: tuple[str, ...] = ()) -> list[str]:
    """Search queries for one source: the expanded subject, or the chat model's `planned` queries
    (with PubMed's MeSH terms for PubMed)."""
    mesh: list[str] = []
    if isinstance(source, PubMedSource):
        try:
            mesh = source.translate(spec.subject).mesh_terms()
        except NetworkUnavailable:
            raise
        except SourceError as error:  # MeSH only sharpens the queries; go on without it
            harvest.skipped.append(_skip(error.what, f"MeSH translation failed: {error.reason}"))
    queries = (arrange_queries(spec.subject, planned, mesh_terms=mesh, max_queries=spec.research.max_queries)
               if planned else expand_queries(spec.subject, mesh_terms=mesh, max_queries=spec.research.max_queries))
    return list(dict.fromkeys([*queries, *spec.research.extra_queries]))


def store_document(document: Document, folder: Path) -> dict[str, Any]:
    """Write the document as JSON in the job's documents folder; its provenance, path and size."""
    path = folder / f"{document.doc_id}.json"
    path.write_text(json.dumps(document.to_dict(), ensure_ascii=False))
    return {**document.provenance(), "path": str(path), "chars": len(document.text)}


def harvest_source(source: Source, plan: SourcePlan, spec: JobSpec, known: set[str], folder: Path,
                   events: EventLog) -> Harvest:
    """Search one source query by query until its quota is met; every failure is recorded, not raised."""
    harvest = Harvest()
    try:
        searched = source.name in REMOTE - {"web"}
        queries = queries_for(source, spec, harvest, plan.queries) if searched else [spec.subject]
        for query in queries:
            if len(harvest.documents) >= plan.quota:
                break
            _search_and_fetch(source, query, plan.quota - len(harvest.documents), known, folder, events, harvest,
                              lambda: events.progress("researcher", f"documents from {source.name}",
                                                      min(len(harvest.documents), plan.quota), plan.quota))
    except NetworkUnavailable as error:
        harvest.unreachable = error.reason
        harvest.skipped.append(_skip(source.name, f"no network: {error.reason}"))
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
        harvest.skipped.append(_skip(error.what, error.reason))
        events.emit("researcher", "skip", f"{source.name} search {query!r} failed: {error.reason}")
        return
    report = getattr(source, "last_report", None)
    harvest.searches.append({"query": query, "returned": len(references),
                             "total": getattr(report, "total", None), "reason": getattr(report, "reason", "")})
    harvest.skipped.extend(_skip(f"{source.name}:{native_id}", reason)
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
            harvest.skipped.append({**_skip(f"{source.name}:{reference.native_id}", error.reason),
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


def _skip(what: str, reason: str) -> dict[str, Any]:
    return {"what": what, "reason": reason, "phase": "researcher"}


def harvest_all(plans: list[SourcePlan], spec: JobSpec, settings: RunSettings, known: set[str], folder: Path,
                events: EventLog) -> tuple[Harvest, list[SourceHarvest], dict[str, int]]:
    """Every planned source through one cached HTTP client: the combined harvest, a summary per
    source, and the client's cache hits/misses and network requests."""
    total, summaries = Harvest(), []
    source_settings = sources_settings(settings, spec)
    with build_http(source_settings) as http:
        for plan in plans:
            try:
                source = build_source(plan.name, source_settings, http=http)
            except SourceError as error:
                total.skipped.append(_skip(plan.name, error.reason))
                continue
            harvest = harvest_source(source, plan, spec, known, folder, events)
            events.emit("researcher", "decision", f"{plan.name}: {len(harvest.documents)} documents from "
                        f"{len(harvest.searches)} searches, {len(harvest.skipped)} skipped")
            total.documents += harvest.documents
            total.skipped += harvest.skipped
            summaries.append(SourceHarvest(source=plan.name, quota=plan.quota, reason=plan.reason,
                                           documents=len(harvest.documents), searches=harvest.searches,
                                           unreachable=harvest.unreachable))
        return total, summaries, vars(http.stats).copy()


def no_network_notice(summaries: list[SourceHarvest]) -> dict[str, Any] | None:
    """One skip that says the network is down and what to try, when no source could be reached."""
    unreachable = [s for s in summaries if s.unreachable]
    if not unreachable:
        return None
    names = ", ".join(s.source for s in unreachable)
    return _skip("no network", f"cannot reach {names} ({unreachable[0].unreachable}); {NO_NETWORK_HINT}")


def plan_queries(plans: list[SourcePlan], spec: JobSpec, settings: RunSettings, events: EventLog) -> list[SourcePlan]:
    """The chat model's queries on the plans of searched sources when one is configured and answers well;
    the plans unchanged (expand_queries) otherwise. Only the user's subject reaches the model. Which path
    was taken, and why, is an event."""
    searched = {p.name for p in plans if p.name in REMOTE - {"web"}} if settings.network else set()
    if not searched:
        return plans
    decision = expand_queries_with_model(chat_model_from(settings), spec.subject, spec.research.max_queries)
    if not decision.ok:
        events.emit("researcher", "decision", f"queries: deterministic expansion ({decision.reason})",
                    query_path="deterministic", query_reason=decision.reason)
        return plans
    queries = tuple(arrange_queries(spec.subject, decision.value.queries, max_queries=spec.research.max_queries))
    events.emit("researcher", "decision", f"queries: chat model ({decision.reason}): {'; '.join(queries)}",
                query_path="chat model", query_reason=decision.value.reason, queries=list(queries))
    return [replace(p, queries=queries) if p.name in searched else p for p in plans]


def gather_documents(state: JobState, runtime: Runtime[JobContext]) -> dict:
    """The researcher node: plan sources, harvest each within its quota, record provenance and cache use."""
    spec, settings = state["spec"], runtime.context.settings
    events = runtime.context.events(state["job_id"])
    folder = runtime.context.paths(state["job_id"]).documents
    folder.mkdir(parents=True, exist_ok=True)
    plans = plan_queries(plan_sources(spec), spec, settings, events)
    events.emit("researcher", "decision", "sources: " + "; ".join(
        f"{p.name} ({p.quota} documents: {p.reason})" for p in plans), sources=[vars(p) for p in plans])
    offline = [] if settings.network else [p for p in plans if p.name in REMOTE]
    known = {d["doc_id"] for d in state.get("documents", [])}
    harvest, summaries, stats = harvest_all([p for p in plans if p not in offline], spec, settings, known,
                                            folder, events)
    notices = [_skip("no network", f"network access is off (FTAGENT_NETWORK=0), so {', '.join(p.name for p in offline)}"
                     f" cannot be searched; {NO_NETWORK_HINT}")] if offline else []
    if not harvest.documents and (notice := no_network_notice(summaries)):
        notices.append(notice)  # first in the list, so the stop message leads with it
    skipped = notices + harvest.skipped
    events.emit("researcher", "phase", f"{len(harvest.documents)} documents read, {len(skipped)} skipped; HTTP: "
                f"{stats['cache_hits']} cache hits, {stats['network_requests']} network requests",
                skipped=skipped, http=stats)
    research = ResearchResult(sources=summaries, http=stats, cache=str(settings.http_cache))
    return {"documents": harvest.documents, "skipped": skipped, "research": research}
