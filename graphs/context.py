"""Run settings (a typed context, not state) and the job's folders.

Precedence: explicit > environment (FTAGENT_*) > config file (<home>/config.yaml or $FTAGENT_CONFIG) > default."""

from __future__ import annotations

import difflib
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, field_validator

from tools.events import EventListener, EventLog
from tools.hardware import Precision
from tools.stores.sql_table import check_database_url

DEFAULT_HOME = "~/.ftagent"
_ENVIRONMENT = {
    "home": "FTAGENT_HOME",
    "threads": "FTAGENT_THREADS",
    "precision": "FTAGENT_PRECISION",
    "chat_model": "FTAGENT_CHAT_MODEL",
    "chat_base_url": "FTAGENT_CHAT_BASE_URL",
    "chat_api_key": "FTAGENT_CHAT_API_KEY",
    "chat_timeout_s": "FTAGENT_CHAT_TIMEOUT",
    "embedding_model": "FTAGENT_EMBEDDING_MODEL",
    "network": "FTAGENT_NETWORK",
    "http_contact": "FTAGENT_HTTP_CONTACT",
    "http_timeout_s": "FTAGENT_HTTP_TIMEOUT",
    "http_retries": "FTAGENT_HTTP_RETRIES",
    "ncbi_email": "FTAGENT_NCBI_EMAIL",
    "ncbi_api_key": "FTAGENT_NCBI_API_KEY",
    "arxiv_url": "FTAGENT_ARXIV_URL",
    "pubmed_url": "FTAGENT_PUBMED_URL",
    "wikipedia_url": "FTAGENT_WIKIPEDIA_URL",
    "document_roots": "FTAGENT_DOCUMENT_ROOTS",
    "max_download_mb": "FTAGENT_MAX_DOWNLOAD_MB",
    "max_request_bytes": "FTAGENT_MAX_REQUEST_BYTES",
    "serving_api_key": "FTAGENT_SERVING_API_KEY",
    "database_url": "FTAGENT_DATABASE_URL",
    "job_lease_s": "FTAGENT_JOB_LEASE",
    "chroma_url": "FTAGENT_CHROMA_URL",
    "hub_downloads": "FTAGENT_HUB_DOWNLOADS",
    "tracking": "FTAGENT_TRACKING",
    "mlflow_tracking_uri": "MLFLOW_TRACKING_URI",
}


class Settings(BaseModel):
    model_config = ConfigDict(extra="forbid")  # a misspelt setting is refused, never dropped

    home: Path = Path(DEFAULT_HOME).expanduser()
    threads: int | None = None
    # compute precision of training, evaluation and serving: fp32, bf16 (autocast), or auto (bf16 where the
    # hardware has it natively); a job's own training.precision, when not auto, wins for that job
    precision: Precision = "auto"
    chat_model: str | None = None  # any OpenAI-compatible chat model; None = deterministic policies
    chat_base_url: str | None = None
    chat_api_key: str | None = None
    # seconds one chat-model request (a decision, a judge grade) may take before it counts as "timeout"
    chat_timeout_s: float = Field(30.0, gt=0)
    embedding_model: str | None = None  # a sentence-transformers folder; None = the embedded MiniLM
    # Remote sources (arXiv, PubMed, Wikipedia, web). network=False: never try them (air-gapped machines).
    network: bool = True
    http_contact: str | None = None  # User-Agent contact (URL or e-mail); None = the project URL
    http_timeout_s: float = 30.0
    http_retries: int = 3  # extra attempts after the first, on 429/5xx/timeouts
    http_backoff_s: float = 1.0  # first retry wait; doubles each retry unless Retry-After says
    http_min_interval_s: float | None = None  # None = each service's own pace (arXiv 3 s, PubMed 1/3 s)
    ncbi_email: str | None = None  # NCBI asks E-utilities clients for a contact address
    ncbi_api_key: str | None = None  # raises PubMed's rate limit from 3/s to 10/s; never logged
    arxiv_url: str | None = None  # base URL overrides (mirrors, proxies, tests); None = the public API
    pubmed_url: str | None = None
    wikipedia_url: str | None = None
    # base models named by a Hugging Face id may be downloaded from the Hub (off: only the local cache)
    hub_downloads: bool = False
    # experiment tracking: TensorBoard event files always; "mlflow" also logs each training round to
    # MLflow (mlflow_tracking_uri, $MLFLOW_TRACKING_URI; None = a file store in <home>/mlruns)
    tracking: Literal["tensorboard", "mlflow"] = "tensorboard"
    mlflow_tracking_uri: str | None = None
    # `ftagent serve`: A/B splits {public name: {version: weight}}; a --ab of the same name overrides one
    serving_ab_splits: dict[str, dict[str, float]] = {}
    # -- running it for a team (remote doors: HTTP API, Slack, chat over HTTP) --
    # folders remote callers may name as docs_path, besides <home>/documents ($FTAGENT_DOCUMENT_ROOTS:
    # os.pathsep-separated)
    document_roots: list[Path] = []
    max_download_mb: float = Field(20.0, gt=0)  # the largest body the HTTP layer reads
    max_request_bytes: int = Field(1_000_000, ge=1024)  # the largest request body the API accepts (413)
    serving_api_key: str | None = None  # `ftagent serve`: required on /admin/* and /v1/* when set
    slack_allowed_teams: list[str] = []  # Slack workspace ids the bot answers; empty = any
    slack_allowed_channels: list[str] = []  # channel ids; empty = any
    # Slack user id -> ftagent user name; when set, only these users may use the bot
    slack_users: dict[str, str] = {}

    @field_validator("document_roots", mode="before")
    @classmethod
    def _split_roots(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [Path(part).expanduser() for part in value.split(os.pathsep) if part.strip()]
        return value
    # Shared state for several workers and hosts: jobs, queue, checkpoints, registry and feedback in this
    # PostgreSQL database (postgresql://user:password@host:5432/db) instead of <home>/ftagent.sqlite.
    database_url: str | None = None
    # seconds a running job's lease lasts on PostgreSQL (renewed while its worker lives; after a dead
    # worker's lease expires another worker takes the job over)
    job_lease_s: float = Field(60.0, gt=0)
    # a chroma server (http://host:8000) for the chunk store instead of the embedded <home>/chroma
    chroma_url: str | None = None

    @field_validator("database_url")
    @classmethod
    def _postgres_only(cls, url: str | None) -> str | None:
        return check_database_url(url) if url else None

    @field_validator("chroma_url")
    @classmethod
    def _http_only(cls, url: str | None) -> str | None:
        if url and not url.startswith(("http://", "https://")):
            raise ValueError(f"chroma_url must be an http:// or https:// URL of a chroma server, not {url!r}")
        return url or None

    @property
    def database(self) -> Path | str:
        """Where jobs, checkpoints, the registry and feedback live: the PostgreSQL URL when one is set,
        else the SQLite file in the home folder."""
        return self.database_url or self.home / "ftagent.sqlite"

    @property
    def chroma(self) -> Path | str:
        """The chunk store: the chroma server's URL when one is set, else <home>/chroma (embedded)."""
        return self.chroma_url or self.home / "chroma"

    @property
    def http_cache(self) -> Path:
        """Where every job's HTTP answers are cached, so a repeated job downloads nothing twice."""
        return self.home / "http-cache"

    @property
    def documents_root(self) -> Path:
        """The folder remote callers' documents go in; always a document root."""
        return self.home / "documents"

    def precision_for(self, requested: str = "auto") -> str:
        """The precision a job asked for, or this setting when it asked for "auto" (either may be "auto")."""
        return requested if requested != "auto" else self.precision

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
        check_setting_names(loaded, str(config_path))
        from_file = dict(loaded)
    return Settings.model_validate({**from_file, **from_env, **explicit, "home": home})


def check_setting_names(values: Mapping[str, Any], where: str) -> None:
    """A ValueError naming each key that is not a setting, with the nearest setting's name."""
    unknown = [str(key) for key in values if key not in Settings.model_fields]
    if unknown:
        raise ValueError(f"{where}: " + "; ".join(_unknown_setting(key) for key in unknown))


def _unknown_setting(key: str) -> str:
    nearest = difflib.get_close_matches(key, list(Settings.model_fields), n=1)
    return f"unknown setting {key!r}" + (f" (did you mean {nearest[0]!r}?)" if nearest else "")


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

    def tensorboard(self, round_number: int) -> Path:
        return self.root / "tensorboard" / f"round-{round_number}"

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
        from tools.llm.embeddings import Embedder

        return Embedder(self.settings.embedding_model)
