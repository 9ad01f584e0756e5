"""Experiment tracking: every training round writes TensorBoard event files (train loss, learning rate,
grad norm, tokens/s, validation loss, and the evaluation's base and tuned metrics), so runs can be
compared in `tensorboard --logdir <home>/jobs`. A listener on the trainer's own step and event
callbacks: the recipe in tools/training/lora.py does not know about it."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

TRAIN_SCALARS = ("loss", "learning_rate", "grad_norm", "tokens_per_second")


class TensorBoardRun:
    """One round's event files in `log_dir` (appended to when a resumed round writes again)."""

    def __init__(self, log_dir: Path | str) -> None:
        from torch.utils.tensorboard import SummaryWriter

        self.log_dir = Path(log_dir)
        self.writer = SummaryWriter(str(self.log_dir))

    def step(self, metrics: Any) -> None:
        """A trainer StepMetrics: train/<loss|learning_rate|grad_norm|tokens_per_second> at its step."""
        for name in TRAIN_SCALARS:
            self.writer.add_scalar(f"train/{name}", float(getattr(metrics, name)), metrics.step)

    def event(self, message: str, data: Mapping[str, Any]) -> None:
        """The trainer's events that carry a number worth plotting (validation loss at each evaluation)."""
        if data.get("val_loss") is not None and data.get("step") is not None:
            self.writer.add_scalar("eval/val_loss", float(data["val_loss"]), int(data["step"]))

    def config(self, config: Mapping[str, Any]) -> None:
        lines = [f"| {key} | {value} |" for key, value in sorted(config.items())]
        self.writer.add_text("config", "\n".join(["| setting | value |", "|---|---|", *lines]))

    def evaluation(self, step: int, base: Mapping[str, Any], tuned: Mapping[str, Any]) -> None:
        """eval/<metric>/<base|tuned> for every numeric metric, at the round's last training step."""
        for side, scores in (("base", base), ("tuned", tuned)):
            for key, value in scores.items():
                if isinstance(value, int | float) and not isinstance(value, bool):
                    self.writer.add_scalar(f"eval/{key}/{side}", float(value), step)

    def close(self) -> None:
        self.writer.flush()
        self.writer.close()


class RoundTrackers:
    """TensorBoard and, when configured, MLflow for one round, called as one tracker. A tracker other
    than the first that fails while logging is reported once through `on_problem` and dropped (a
    tracking server going away never stops a training run); the first one's errors propagate."""

    def __init__(self, trackers: list[Any], on_problem: Any = None) -> None:
        self.trackers = list(trackers)
        self.on_problem = on_problem

    def _each(self, method: str, *args: Any) -> None:
        for index, tracker in enumerate(list(self.trackers)):
            call = getattr(tracker, method, None)
            if call is None:
                continue
            try:
                call(*args)
            except Exception as error:
                if index == 0:
                    raise
                self.trackers.remove(tracker)
                if self.on_problem is not None:
                    self.on_problem(f"{error}; tracking there is off for the rest of this round")

    def step(self, metrics: Any) -> None:
        self._each("step", metrics)

    def event(self, message: str, data: Mapping[str, Any]) -> None:
        self._each("event", message, data)

    def config(self, config: Mapping[str, Any]) -> None:
        self._each("config", config)

    def evaluation(self, step: int, base: Mapping[str, Any], tuned: Mapping[str, Any]) -> None:
        self._each("evaluation", step, base, tuned)

    def adapter(self, folder: Path | str) -> None:
        self._each("adapter", folder)

    def close(self, failed: bool = False) -> None:
        """Flush and close each tracker; `failed`: the round stopped on an error (MLflow marks it FAILED)."""
        for tracker in self.trackers:
            if failed and hasattr(tracker, "fail"):
                self._each_one(tracker, "fail")
            else:
                self._each_one(tracker, "close")

    def _each_one(self, tracker: Any, method: str) -> None:
        try:
            getattr(tracker, method)()
        except Exception as error:
            if tracker is self.trackers[0]:
                raise
            if self.on_problem is not None:
                self.on_problem(str(error))
