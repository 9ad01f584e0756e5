"""researcher: find documents, extract their text, keep provenance; failures are recorded per item.

The policy lives in tools/research/: planning.py chooses the sources, their quotas and queries (the
chat model's when one is configured), harvest.py searches, fetches and stores the documents. This
node reads the job spec and the run settings for them, and writes the ResearchResult.
"""

from __future__ import annotations

from pathlib import Path

from langgraph.runtime import Runtime

from graphs.context import JobContext, RunSettings
from graphs.spec import JobSpec
from graphs.state import JobState, ResearchResult, SourceHarvest
from tools.llm.chat_model import chat_model_from
from tools.research.harvest import Harvest, harvest_all, network_off_notice, no_network_notice
from tools.research.planning import ResearchRequest, SourcePlan, plan_queries, plan_sources
from tools.sources.arxiv_source import ArxivSettings
from tools.sources.http import HttpSettings, host_key
from tools.sources.names import REMOTE_SOURCES
from tools.sources.pubmed_source import PubMedSettings
from tools.sources.registry import SourcesSettings
from tools.sources.web_source import WebSettings
from tools.sources.wikipedia_source import WikipediaSettings


def research_request(spec: JobSpec) -> ResearchRequest:
    """What the spec asks of the research: subject, document budget, named sources, query knobs."""
    return ResearchRequest(subject=spec.subject, max_documents=spec.budget.max_documents,
                           sources=tuple(spec.sources), extra_sources=tuple(spec.research.extra_sources),
                           documents_given=bool(spec.docs_path), urls_given=bool(spec.urls),
                           max_queries=spec.research.max_queries,
                           extra_queries=tuple(spec.research.extra_queries))


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


def source_summary(plan: SourcePlan, harvest: Harvest) -> SourceHarvest:
    return SourceHarvest(source=plan.name, quota=plan.quota, reason=plan.reason,
                         documents=len(harvest.documents), searches=harvest.searches,
                         unreachable=harvest.unreachable)


def gather_documents(state: JobState, runtime: Runtime[JobContext]) -> dict:
    """The researcher node: plan sources, harvest each within its quota, record provenance and cache use."""
    spec, settings = state["spec"], runtime.context.settings
    events = runtime.context.events(state["job_id"])
    folder = runtime.context.paths(state["job_id"]).documents
    folder.mkdir(parents=True, exist_ok=True)
    request = research_request(spec)
    plans = plan_sources(request)
    if settings.network:
        plans = plan_queries(plans, request, lambda: chat_model_from(settings), events)
    events.emit("researcher", "decision", "sources: " + "; ".join(
        f"{p.name} ({p.quota} documents: {p.reason})" for p in plans), sources=[vars(p) for p in plans])
    offline = [] if settings.network else [p for p in plans if p.name in REMOTE_SOURCES]
    known = {d["doc_id"] for d in state.get("documents", [])}
    harvest, by_source, stats = harvest_all([p for p in plans if p not in offline], request,
                                            sources_settings(settings, spec), known, folder, events)
    notices = [network_off_notice([p.name for p in offline])] if offline else []
    if not harvest.documents and (notice := no_network_notice(by_source)):
        notices.append(notice)  # first in the list, so the stop message leads with it
    skipped = notices + harvest.skipped
    events.emit("researcher", "phase", f"{len(harvest.documents)} documents read, {len(skipped)} skipped; HTTP: "
                f"{stats['cache_hits']} cache hits, {stats['network_requests']} network requests",
                skipped=skipped, http=stats)
    summaries = [source_summary(plan, source_harvest) for plan, source_harvest in by_source]
    research = ResearchResult(sources=summaries, http=stats, cache=str(settings.http_cache))
    return {"documents": harvest.documents, "skipped": skipped, "research": research}
