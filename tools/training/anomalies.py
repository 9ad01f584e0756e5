"""The anomaly watch of a training run: a non-finite loss or gradient norm, a loss spike or
exploding gradients (against moving averages, once they have settled) make the run roll back to its
newest checkpoint with a lower learning rate, up to `max_rollbacks` times; then it stops with the
reason."""

from __future__ import annotations

import math
from collections.abc import Callable

from tools.training.checkpointing import CheckpointKeeper, Progress
from tools.training.config import TrainingConfig, TrainingError


class TrainingAnomaly(Exception):
    """A step went wrong (non-finite or spiking loss, exploding gradients); the run rolls back."""


class AnomalyGuard:
    """Checks each step's loss and gradient norm, keeps their moving averages in the run's
    `Progress`, and rolls back when a step went wrong."""

    def __init__(
        self,
        config: TrainingConfig,
        on_event: Callable[[str, dict], None] = lambda message, data: None,
    ) -> None:
        self.config = config
        self.on_event = on_event

    def check(self, step: int, loss: float, grad_norm: float, progress: Progress) -> None:
        """Raise TrainingAnomaly for a non-finite loss, a loss spike or exploding gradients."""
        cfg = self.config
        if not math.isfinite(loss):
            raise TrainingAnomaly(f"loss became {loss} at step {step}")
        if not math.isfinite(grad_norm):
            raise TrainingAnomaly(f"gradient norm became {grad_norm} at step {step}")
        settled = len(progress.loss_history) >= cfg.anomaly_warmup_steps
        if settled and progress.loss_ema and loss > cfg.spike_factor * progress.loss_ema:
            raise TrainingAnomaly(
                f"loss spiked to {loss:.3f} at step {step} "
                f"(> {cfg.spike_factor:g} x moving average {progress.loss_ema:.3f})"
            )
        if settled and progress.grad_ema and grad_norm > cfg.grad_spike_factor * progress.grad_ema:
            raise TrainingAnomaly(
                f"gradient norm exploded to {grad_norm:.3g} at step {step} "
                f"(> {cfg.grad_spike_factor:g} x moving average {progress.grad_ema:.3g})"
            )

    @staticmethod
    def update_averages(
        progress: Progress, loss: float, grad_norm: float, decay: float = 0.9
    ) -> None:
        """The moving averages a spike is measured against, after an accepted step."""
        progress.loss_ema = (
            loss if progress.loss_ema is None else decay * progress.loss_ema + (1 - decay) * loss
        )
        progress.grad_ema = (
            grad_norm
            if progress.grad_ema is None
            else decay * progress.grad_ema + (1 - decay) * grad_norm
        )

    def roll_back(
        self, anomaly: TrainingAnomaly, progress: Progress, checkpoints: CheckpointKeeper
    ) -> tuple[int, Progress]:
        """Back to the newest checkpoint (or the initial state) with a lower LR, or give up after
        the cap. Returns the step and the progress to go on from."""
        cfg = self.config
        rollbacks = progress.rollbacks + 1
        if rollbacks > cfg.max_rollbacks:
            self.on_event(
                "training failed", {"reason": str(anomaly), "rollbacks": progress.rollbacks}
            )
            raise TrainingError(f"{anomaly}; gave up after {cfg.max_rollbacks} rollbacks")
        step, restored = checkpoints.load_latest()
        if not step:
            step, restored = checkpoints.restore_initial()
        restored.rollbacks = rollbacks
        restored.lr_scale = progress.lr_scale * cfg.rollback_lr_factor
        checkpoints.scale_learning_rate(restored.lr_scale)
        self.on_event(
            "rolled back",
            {
                "reason": str(anomaly),
                "to_step": step,
                "rollback": rollbacks,
                "max_rollbacks": cfg.max_rollbacks,
                "lr_scale": restored.lr_scale,
            },
        )
        return step, restored
