"""The home folder's layout (~/.ftagent by default) and a job's folder inside it: every sub-path is
named here once, and every package (the doors, the graph, the tools) asks this module for it."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class JobPaths:
    """jobs/<id>/: what one job writes."""

    root: Path

    @property
    def documents(self) -> Path:
        return self.root / "documents"

    @property
    def curation_rows(self) -> Path:
        """Every chunk's scores and why it was kept or dropped."""
        return self.root / "curation" / "chunks.jsonl"

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


@dataclass(frozen=True)
class HomeLayout:
    """The home folder: the SQLite database, the stores, the caches and every job's and model's
    folder."""

    root: Path

    @property
    def config_file(self) -> Path:
        """The settings file read unless $FTAGENT_CONFIG names another."""
        return self.root / "config.yaml"

    @property
    def database(self) -> Path:
        """Jobs, checkpoints, the registry and feedback (unless a PostgreSQL URL is set)."""
        return self.root / "ftagent.sqlite"

    @property
    def chroma(self) -> Path:
        """The embedded chunk store (unless a chroma server is set)."""
        return self.root / "chroma"

    @property
    def http_cache(self) -> Path:
        """Every job's HTTP answers, so a repeated job downloads nothing twice."""
        return self.root / "http-cache"

    @property
    def documents(self) -> Path:
        """Remote callers' documents; always a document root."""
        return self.root / "documents"

    def job(self, job_id: str) -> JobPaths:
        return JobPaths(self.root / "jobs" / job_id)

    @property
    def models(self) -> Path:
        """Registered versions, a folder each (the adapter, its card, merged weights on request)."""
        return self.root / "models"

    def model(self, name: str) -> Path:
        return self.models / name

    def base_model(self, key: str) -> Path:
        """A catalogue base model, converted or downloaded once."""
        return self.models / "base" / key

    @property
    def gguf_cache(self) -> Path:
        """What `ftagent serve --engine llamacpp` serves: each base model and each version's LoRA adapter
        (or merged model) as GGUF, written on first use and reused while its source is unchanged."""
        return self.root / "gguf-cache"

    def feedback_export(self, model: str) -> Path:
        return self.root / "feedback" / f"{model}.jsonl"

    @property
    def evaluations(self) -> Path:
        """`ftagent eval` reports."""
        return self.root / "evaluations"

    @property
    def mlruns(self) -> Path:
        """MLflow's file store when tracking is mlflow and no tracking URI is set."""
        return self.root / "mlruns"

    @property
    def serving_assignments(self) -> Path:
        """Which A/B arm answered which caller (`ftagent serve`)."""
        return self.root / "serving-assignments.jsonl"

    @property
    def api_token(self) -> Path:
        """The HTTP API's admin token, made on first start."""
        return self.root / "api_token"

    @property
    def training_lock(self) -> Path:
        """Held while a job trains: one training at a time per home."""
        return self.root / "training.lock"

    @property
    def worker_lock(self) -> Path:
        """Held by the queue worker: one worker per home."""
        return self.root / "worker.lock"
