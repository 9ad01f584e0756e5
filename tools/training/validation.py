"""Validation during a training run: when the validation loss is measured (`validations_per_epoch`
evenly spaced points per epoch and the last step), which adapter is the best so far (the one kept at
the end), and when training stops early (`early_stopping_patience` checks without a new best)."""

from __future__ import annotations

import math
from collections.abc import Callable

from tools.training.checkpointing import Progress
from tools.training.config import TrainingConfig

MIN_IMPROVEMENT = 1e-4  # a validation loss lower than the best by less is no new best


def validation_steps(steps_per_epoch: int, total_steps: int, per_epoch: int) -> set[int]:
    """The steps after which the validation loss is measured: `per_epoch` evenly spaced points in
    every epoch (its end included) and the last step."""
    points = {math.ceil(steps_per_epoch * k / per_epoch) for k in range(1, per_epoch + 1)}
    epochs = math.ceil(total_steps / steps_per_epoch)
    return {
        e * steps_per_epoch + p
        for e in range(epochs)
        for p in points
        if 0 < e * steps_per_epoch + p <= total_steps
    } | {total_steps}


class Validator:
    """Records each validation loss in the run's `Progress`, keeps a copy of the adapter at each new
    best, and decides the early stop."""

    def __init__(
        self,
        config: TrainingConfig,
        steps_per_epoch: int,
        total_steps: int,
        on_event: Callable[[str, dict], None],
    ) -> None:
        self.patience = config.early_stopping_patience
        self.steps = validation_steps(steps_per_epoch, total_steps, config.validations_per_epoch)
        self.on_event = on_event

    def due(self, step: int) -> bool:
        return step in self.steps

    def record(
        self,
        step: int,
        progress: Progress,
        val_loss: float | None,
        copy_adapter: Callable[[], dict],
    ) -> None:
        """One validation: a new best keeps `copy_adapter()`, else one more check without progress
        (None: no validation set, nothing to record)."""
        if val_loss is None:
            return
        progress.val_history.append(val_loss)
        progress.val_steps.append(step)
        if progress.best_val is None or val_loss < progress.best_val - MIN_IMPROVEMENT:
            progress.best_val, progress.bad_epochs = val_loss, 0
            progress.best_adapter = copy_adapter()
        else:
            progress.bad_epochs += 1
            progress.stopped_early = progress.bad_epochs >= self.patience
        self.on_event(
            "epoch end",
            {"step": step, "val_loss": round(val_loss, 4), "stopped_early": progress.stopped_early},
        )
