"""MLflow tracking (the `tracking: mlflow` setting): each training round is an MLflow run in the
model family's experiment, with the training config as params, the trainer's step metrics, the
validation loss, the evaluation's base and tuned metrics, and the adapter folder as artifacts.

The run is found again by its tags (job id and round), so a resumed round and the evaluator (a later
graph node, maybe in another process) log into the same run. `mlflow-skinny` is enough (the `mlflow`
extra); it is imported only when this tracking is on."""

from __future__ import annotations

import os
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tools.home import HomeLayout

TRAIN_SCALARS = ("loss", "learning_rate", "grad_norm", "tokens_per_second")
JOB_TAG, ROUND_TAG = "ftagent.job", "ftagent.round"
FLUSH_EVERY = 20  # step metrics are sent in batches (one request per batch to a tracking server)


class TrackingError(RuntimeError):
    """MLflow could not be reached or refused the run; the message names the tracking URI."""


@dataclass(frozen=True)
class MlflowTarget:
    """Where a round's run goes: the tracking URI, the experiment and the run's identifying tags."""

    tracking_uri: str
    experiment: str
    job_id: str
    round_number: int
    tags: Mapping[str, str] = field(default_factory=dict)


def default_tracking_uri(home: Path) -> str:
    """A file store in the home (`<home>/mlruns`) when neither the setting nor MLFLOW_TRACKING_URI names one."""
    return HomeLayout(Path(home)).mlruns.resolve().as_uri()


def _client(uri: str):
    try:
        from mlflow.tracking import MlflowClient
    except ImportError as error:
        raise TrackingError("tracking: mlflow needs MLflow: pip install 'ftagent[mlflow]' (mlflow-skinny)") \
            from error
    if uri.startswith("file:") or "://" not in uri:
        # MLflow 3 keeps its file store only on request; a file store is what a plain machine has
        os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
    return MlflowClient(tracking_uri=uri)


def _problem(target: MlflowTarget, doing: str, error: Exception) -> TrackingError:
    first_line = (str(error).strip().splitlines() or [type(error).__name__])[0][:300]
    return TrackingError(f"MLflow tracking at {target.tracking_uri} failed {doing}: {first_line}")


class MlflowRun:
    """One round's MLflow run: created on first use, found again by its tags afterwards."""

    def __init__(self, target: MlflowTarget, create: bool = True) -> None:
        self.target = target
        self.pending: list[Any] = []
        try:
            self.client = _client(target.tracking_uri)
            self.run_id, self.created = self._find_or_create(create)
        except TrackingError:
            raise
        except Exception as error:  # mlflow raises its own, requests' and OS errors alike
            raise _problem(target, "opening the run", error) from error

    def _find_or_create(self, create: bool) -> tuple[str | None, bool]:
        experiment = self.client.get_experiment_by_name(self.target.experiment)
        if experiment is None:
            if not create:
                return None, False
            experiment_id = self.client.create_experiment(self.target.experiment)
        else:
            experiment_id = experiment.experiment_id
        found = self.client.search_runs(
            [experiment_id], max_results=1,
            filter_string=f"tags.`{JOB_TAG}` = '{self.target.job_id}' and "
                          f"tags.`{ROUND_TAG}` = '{self.target.round_number}'")
        if found:
            return found[0].info.run_id, False
        if not create:
            return None, False
        tags = {JOB_TAG: self.target.job_id, ROUND_TAG: str(self.target.round_number), **self.target.tags}
        run = self.client.create_run(experiment_id, run_name=f"{self.target.job_id} round "
                                                             f"{self.target.round_number}", tags=tags)
        return run.info.run_id, True

    def _call(self, doing: str, fn: Any, *args: Any, **kwargs: Any) -> None:
        if self.run_id is None:
            return
        try:
            fn(self.run_id, *args, **kwargs)
        except Exception as error:
            raise _problem(self.target, doing, error) from error

    def _metric(self, key: str, value: float, step: int) -> None:
        from mlflow.entities import Metric

        self.pending.append(Metric(key, float(value), int(time.time() * 1000), int(step)))

    def flush(self) -> None:
        metrics, self.pending = self.pending, []
        if metrics:
            self._call("logging metrics", self.client.log_batch, metrics=metrics)

    def step(self, metrics: Any) -> None:
        """A trainer StepMetrics: train/<loss|learning_rate|grad_norm|tokens_per_second> at its step."""
        for name in TRAIN_SCALARS:
            self._metric(f"train/{name}", getattr(metrics, name), metrics.step)
        if len(self.pending) >= FLUSH_EVERY * len(TRAIN_SCALARS):
            self.flush()

    def event(self, message: str, data: Mapping[str, Any]) -> None:
        if data.get("val_loss") is not None and data.get("step") is not None:
            self._metric("eval/val_loss", data["val_loss"], data["step"])

    def config(self, config: Mapping[str, Any]) -> None:
        """The training config as params (once: a resumed round's run already has them)."""
        if not self.created:
            return
        from mlflow.entities import Param

        params = [Param(key, str(value)[:6000]) for key, value in sorted(config.items())]
        self._call("logging params", self.client.log_batch, params=params)

    def evaluation(self, step: int, base: Mapping[str, Any], tuned: Mapping[str, Any]) -> None:
        """eval/<metric>/<base|tuned> for every numeric metric, at the round's last training step."""
        for side, scores in (("base", base), ("tuned", tuned)):
            for key, value in scores.items():
                if isinstance(value, int | float) and not isinstance(value, bool):
                    self._metric(f"eval/{key}/{side}", value, step)
        self.flush()

    def adapter(self, folder: Path | str) -> None:
        """The trained adapter folder as the run's `adapter/` artifacts."""
        self.flush()
        self._call("uploading the adapter", self.client.log_artifacts, str(folder), "adapter")

    def tag(self, key: str, value: str) -> None:
        self._call("tagging the run", self.client.set_tag, key, value)

    def close(self, status: str = "FINISHED") -> None:
        self.flush()
        self._call("closing the run", self.client.set_terminated, status=status)

    def fail(self) -> None:
        """The round stopped on an error (or was cancelled): what was logged stays, the run is FAILED."""
        self.close("FAILED")
