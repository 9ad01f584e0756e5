"""Run settings (a typed context, not state) and the job's folders.

Precedence: explicit > environment (FTAGENT_*) > config file (<home>/config.yaml or $FTAGENT_CONFIG) > default."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel

from tools.events import EventListener, EventLog

DEFAULT_HOME = "~/.ftagent"
_ENVIRONMENT = {
    "home": "FTAGENT_HOME",
    "threads": "FTAGENT_THREADS",
    "chat_model": "FTAGENT_CHAT_MODEL",
    "chat_base_url": "FTAGENT_CHAT_BASE_URL",
    "chat_api_key": "FTAGENT_CHAT_API_KEY",
    "embedding_model": "FTAGENT_EMBEDDING_MODEL",
}


class Settings(BaseModel):
    home: Path = Path(DEFAULT_HOME).expanduser()
    threads: int | None = None
    chat_model: str | None = None  # any OpenAI-compatible chat model; None = deterministic policies
    chat_base_url: str | None = None
    chat_api_key: str | None = None
    embedding_model: str | None = None  # a sentence-transformers folder; None = the embedded MiniLM

    @property
    def database(self) -> Path:
        return self.home / "ftagent.sqlite"

    def job_paths(self, job_id: str) -> JobPaths:
        return JobPaths(self.home / "jobs" / job_id)


def resolve_settings(explicit: Mapping[str, Any] | None = None,
                     environ: Mapping[str, str] | None = None) -> Settings:
    """Settings from the four layers, highest first: explicit, environment, config file, default."""
    environ = os.environ if environ is None else environ
    explicit = {k: v for k, v in (explicit or {}).items() if v is not None}
    from_env = {key: environ[var] for key, var in _ENVIRONMENT.items() if environ.get(var)}
    home = Path(str(explicit.get("home") or from_env.get("home") or DEFAULT_HOME)).expanduser()
    config_path = Path(environ.get("FTAGENT_CONFIG") or home / "config.yaml").expanduser()
    from_file: dict[str, Any] = {}
    if config_path.exists():
        loaded = yaml.safe_load(config_path.read_text()) or {}
        if not isinstance(loaded, dict):
            raise ValueError(f"{config_path} must hold a mapping of settings, not {type(loaded).__name__}")
        from_file = {k: v for k, v in loaded.items() if k in Settings.model_fields}
    return Settings.model_validate({**from_file, **from_env, **explicit, "home": home})


@dataclass(frozen=True)
class JobPaths:
    root: Path

    @property
    def documents(self) -> Path:
        return self.root / "documents"

    @property
    def dataset(self) -> Path:
        return self.root / "dataset"

    def checkpoints(self, round_number: int) -> Path:
        return self.root / "checkpoints" / f"round-{round_number}"

    def adapter(self, round_number: int) -> Path:
        return self.root / "adapters" / f"round-{round_number}"

    @property
    def eval(self) -> Path:
        return self.root / "eval"

    @property
    def metrics(self) -> Path:
        return self.root / "metrics.jsonl"

    @property
    def events(self) -> Path:
        return self.root / "events.jsonl"

    @property
    def report(self) -> Path:
        return self.root / "report.md"


@dataclass
class JobContext:
    """What nodes need besides the state: settings, the event log, and heavy objects loaded once."""

    settings: Settings
    listeners: tuple[EventListener, ...] = ()
    _embedders: dict[str, Any] = field(default_factory=dict)

    def events(self, job_id: str) -> EventLog:
        return EventLog(self.settings.job_paths(job_id).events, self.listeners)

    def paths(self, job_id: str) -> JobPaths:
        return self.settings.job_paths(job_id)

    @cached_property
    def embedder(self):
        from tools.embeddings import Embedder

        return Embedder(self.settings.embedding_model)
