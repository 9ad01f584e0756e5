"""The anomaly watch of a training run: a non-finite loss or gradient norm, a loss spike or
exploding gradients (once `anomaly_warmup_steps` steps have been accepted) make the run roll back to its
newest checkpoint with a lower learning rate, up to `max_rollbacks` times; then it stops with the
reason.

A spike is measured against the highest loss of the last LOSS_WINDOW accepted steps, not against their
average: a step's loss is the mean over its batch, and batches of one run differ by what they hold (a
document row against a short answer, a boilerplate passage against a dense one). The benchmark corpus
(bench/bench_trainer.py, SmolLM2-135M, batches of 8) gives steps of 0.15 to 3.5 in its first 14; its 15th,
4.46, was 3.3x the moving average, so the run rolled back, replayed the same batches, and gave up. A run
that diverges goes past anything its recent batches reached."""

from __future__ import annotations

import math
from collections.abc import Callable

from tools.training.checkpointing import CheckpointKeeper, Progress
from tools.training.config import TrainingConfig, TrainingError

LOSS_WINDOW = 20  # accepted steps whose highest loss a new loss is compared with


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
        recent_high = max(progress.loss_history[-LOSS_WINDOW:], default=0.0)
        if settled and recent_high > 0 and loss > cfg.spike_factor * recent_high:
            raise TrainingAnomaly(
                f"loss spiked to {loss:.3f} at step {step} "
                f"(> {cfg.spike_factor:g} x {recent_high:.3f}, the highest of the last "
                f"{min(LOSS_WINDOW, len(progress.loss_history))} steps)"
            )
        if settled and progress.grad_ema and grad_norm > cfg.grad_spike_factor * progress.grad_ema:
            raise TrainingAnomaly(
                f"gradient norm exploded to {grad_norm:.3g} at step {step} "
                f"(> {cfg.grad_spike_factor:g} x moving average {progress.grad_ema:.3g})"
            )

    @staticmethod
    def update_grad_average(progress: Progress, grad_norm: float, decay: float = 0.9) -> None:
        """The gradient norm's moving average (what exploding gradients are measured against), after
        an accepted step; its loss goes to `progress.loss_history`."""
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
