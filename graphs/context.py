"""What the graph receives besides the state: a JobContext holding the run settings (resolved by the
front doors, agent/settings.py), the event listeners, and heavy objects loaded once. The graph reads the
settings through RunSettings, the part of them it uses, and never resolves settings itself."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, Protocol

from tools.events import EventListener, EventLog
from tools.home import JobPaths
from tools.llm.chat_model import ChatSettings

__all__ = ["JobContext", "JobPaths", "RunSettings"]


class RunSettings(ChatSettings, Protocol):
    """The run settings the graph's nodes read (agent.settings.Settings has them all; tested)."""

    home: Path
    threads: int | None
    network: bool
    hub_downloads: bool
    embedding_model: str | None
    tracking: str
    mlflow_tracking_uri: str | None
    http_contact: str | None
    http_timeout_s: float
    http_retries: int
    http_backoff_s: float
    http_min_interval_s: float | None
    max_download_mb: float
    ncbi_email: str | None
    ncbi_api_key: str | None
    arxiv_url: str | None
    pubmed_url: str | None
    wikipedia_url: str | None

    @property
    def database(self) -> Path | str: ...

    @property
    def chroma(self) -> Path | str: ...

    @property
    def http_cache(self) -> Path: ...

    def precision_for(self, requested: str = "auto") -> str: ...

    def job_paths(self, job_id: str) -> JobPaths: ...


@dataclass
class JobContext:
    """What nodes need besides the state: settings, the event log, and heavy objects loaded once."""

    settings: RunSettings
    listeners: tuple[EventListener, ...] = ()
    _embedders: dict[str, Any] = field(default_factory=dict)

    def events(self, job_id: str) -> EventLog:
        return EventLog(self.settings.job_paths(job_id).events, self.listeners)

    def paths(self, job_id: str) -> JobPaths:
        return self.settings.job_paths(job_id)

    @cached_property
    def embedder(self):
        from tools.llm.embeddings import Embedder

        return Embedder(self.settings.embedding_model)

