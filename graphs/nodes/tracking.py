"""The trackers of one training round: TensorBoard event files always, an MLflow run with the
`tracking: mlflow` setting (tools/training/tracking.py, tools/training/mlflow_tracking.py)."""

from __future__ import annotations

from graphs.context import JobPaths, RunSettings
from graphs.spec import JobSpec
from tools.events import EventLog
from tools.stores.model_registry import family_name
from tools.training.tracking import RoundTrackers, TensorBoardRun


def mlflow_target(settings: RunSettings, spec: JobSpec, job_id: str, round_number: int):
    """Where this round's MLflow run goes: the setting's URI (or $MLFLOW_TRACKING_URI, or a file store
    in the home), the model family's experiment, tags naming the job, round, subject and base."""
    from tools.training.mlflow_tracking import MlflowTarget, default_tracking_uri

    return MlflowTarget(settings.mlflow_tracking_uri or default_tracking_uri(settings.home),
                        family_name(spec.base_model, spec.subject), job_id, round_number,
                        {"ftagent.subject": spec.subject, "ftagent.base_model": spec.base_model})


def round_trackers(settings: RunSettings, spec: JobSpec, paths: JobPaths, job_id: str, round_number: int,
                   events: EventLog, create: bool = True) -> RoundTrackers:
    """TensorBoard in the job's tensorboard/round-N folder, then MLflow when configured. Opening the
    MLflow run fails the node with a TrackingError naming the URI (the job resumes from there); a
    failure later only turns MLflow off for the round, with a decision event saying so."""
    trackers: list = [TensorBoardRun(paths.tensorboard(round_number))]
    if settings.tracking == "mlflow":
        from tools.training.mlflow_tracking import MlflowRun

        try:
            trackers.append(MlflowRun(mlflow_target(settings, spec, job_id, round_number), create=create))
        except Exception:
            trackers[0].close()
            raise

    def report(problem: str) -> None:
        events.emit("trainer", "decision", problem)

    return RoundTrackers(trackers, on_problem=report)
