"""Experiment tracking: every training round writes TensorBoard event files (train loss, learning rate,
grad norm, tokens/s, validation loss, and the evaluation's base and tuned metrics), so runs can be
compared in `tensorboard --logdir <home>/jobs`. A listener on the trainer's own step and event
callbacks: the recipe in tools/training.py does not know about it."""

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
