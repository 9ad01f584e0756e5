"""Which sources to search, how many documents each may give, and with which queries.

Which sources: the ones the request names; with none named, local files when a folder was given,
the web source when URLs were given, and otherwise `choose_sources(subject)` (keyword policy,
with its shares of the document budget and its reason). Queries come from `expand_queries(subject)`,
or from the configured chat model (`plan_queries`: only the user's subject reaches it; any failure
falls back to expand_queries, and an event says which path was taken and why).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from tools.events import EventLog
from tools.intake.query_expansion import arrange_queries, choose_sources
from tools.llm.chat_model import expand_queries_with_model
from tools.sources.names import REMOTE_SOURCES

if TYPE_CHECKING:
    from langchain_openai import ChatOpenAI

SEARCHED = REMOTE_SOURCES - {"web"}  # sources searched by query (the web source fetches given URLs)


@dataclass(frozen=True)
class ResearchRequest:
    """What the research is asked for: the subject, the document budget, the sources named, and the
    query knobs (the job spec's, read by the researcher node)."""

    subject: str
    max_documents: int
    sources: tuple[str, ...] = ()  # named by the user; empty = the researcher decides
    extra_sources: tuple[str, ...] = ()  # added to widen the search (the critic's remedy)
    documents_given: bool = False  # a local folder of documents was given
    urls_given: bool = False
    max_queries: int = 3  # queries per source
    extra_queries: tuple[str, ...] = ()


@dataclass(frozen=True)
class SourcePlan:
    """One source to search, its number of documents to gather, and why it was chosen."""

    name: str
    quota: int
    reason: str
    queries: tuple[str, ...] = ()  # the chat model's queries; empty = expand_queries(subject)


def plan_sources(request: ResearchRequest) -> list[SourcePlan]:
    """The sources to search, best first, with their quota of `max_documents` and a reason."""
    budget = request.max_documents
    named = list(dict.fromkeys([*request.sources, *request.extra_sources]))
    implied = [name for name, given in (("local", request.documents_given), ("web", request.urls_given))
               if given]
    if not request.sources and not implied:
        chosen = [(name, share, f"chosen for the subject: {why}")
                  for name, share, why in choose_sources(request.subject)]
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


def plan_queries(plans: list[SourcePlan], request: ResearchRequest,
                 chat_model: Callable[[], ChatOpenAI | None], events: EventLog) -> list[SourcePlan]:
    """The chat model's queries on the plans of searched sources when one is configured and answers
    well; the plans unchanged (expand_queries) otherwise. `chat_model` is called only when a source is
    searched by query. Only the user's subject reaches the model. Which path was taken, and why, is an
    event."""
    searched = {p.name for p in plans if p.name in SEARCHED}
    if not searched:
        return plans
    decision = expand_queries_with_model(chat_model(), request.subject, request.max_queries)
    if not decision.ok:
        events.emit("researcher", "decision", f"queries: deterministic expansion ({decision.reason})",
                    query_path="deterministic", query_reason=decision.reason)
        return plans
    queries = tuple(arrange_queries(request.subject, decision.value.queries, max_queries=request.max_queries))
    events.emit("researcher", "decision", f"queries: chat model ({decision.reason}): {'; '.join(queries)}",
                query_path="chat model", query_reason=decision.value.reason, queries=list(queries))
    return [replace(p, queries=queries) if p.name in searched else p for p in plans]
