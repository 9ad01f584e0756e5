"""A training run's step checkpoints: `<checkpoint_dir>/step-NNNNNNN/state.pt` holds the adapter,
optimizer, scheduler and RNG states (each rank's with several processes) and the run's `Progress`,
written atomically (a staging folder renamed in), the last K kept, and read back with
torch.load(weights_only=True) so a planted pickle is refused, never run. A resumed run continues
from the newest readable one with the same data order and RNG state, so its loss history matches an
uninterrupted run. (The job graph's own checkpoints are tools/stores/checkpoints.py.)"""

from __future__ import annotations

import copy
import pickle
import random
import shutil
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tools.training.config import CheckpointRefused, TrainingConfig

if TYPE_CHECKING:
    from tools.training.parallel import Parallelism


@dataclass
class Progress:
    """Everything about a run's position that a checkpoint must carry for an exact resume."""

    loss_history: list[float] = field(default_factory=list)
    val_history: list[float] = field(default_factory=list)
    val_steps: list[int] = field(default_factory=list)
    best_val: float | None = None
    bad_epochs: int = 0
    train_tokens: int = 0
    best_adapter: dict | None = None
    stopped_early: bool = False
    rollbacks: int = 0
    lr_scale: float = 1.0
    grad_ema: float | None = None

    @classmethod
    def from_dict(cls, data: dict) -> Progress:
        """Read a checkpoint's progress (older checkpoints lack the newer keys, and may hold ones no
        longer kept, such as `loss_ema`), as a copy: the run appends to its lists, and the initial state
        a rollback restores is read more than once."""
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        return cls(**copy.deepcopy(known))


def refused_checkpoint_message(checkpoint: Path, error: Exception) -> str:
    """Why a checkpoint was not loaded and how to go on (torch's own advice, weights_only=False, is
    the one thing not to do with a file someone else may have written)."""
    found = str(error).split("\n")
    detail = next((line.strip() for line in found if "GLOBAL" in line or "Unsupported" in line), "")
    return (
        f"refused to load the training checkpoint {checkpoint / 'state.pt'}: it holds more than "
        f"tensors and plain values ({detail or 'a pickled object'}), and loading it could run "
        f"code. ftagent never writes such files; if you did not put it there, check who can write "
        f"to this folder. To go on, delete the folder {checkpoint} and resume the job: training "
        f"continues from the checkpoint before it (or from step 0)."
    )


class CheckpointKeeper:
    """Saves and restores the state a run mutates (the model's adapter, the optimizer, the LR
    schedule, the RNGs) with its `Progress`. Built once the optimizer exists; it keeps the state
    before the first step in memory, for a rollback that finds no checkpoint."""

    def __init__(
        self,
        config: TrainingConfig,
        parallel: Parallelism,
        model: Any,
        optimizer: Any,
        scheduler: Any,
        on_event: Callable[[str, dict], None],
    ) -> None:
        self.root = Path(config.checkpoint_dir)
        self.keep = config.keep_checkpoints
        self.peak_learning_rate = config.learning_rate
        self.parallel, self.model, self.optimizer, self.scheduler = (
            parallel,
            model,
            optimizer,
            scheduler,
        )
        self.on_event = on_event
        self._initial = self._snapshot()

    def checkpoints(self) -> list[Path]:
        """The complete step checkpoints, oldest first."""
        root = self.root
        return (
            sorted(p for p in root.glob("step-*") if (p / "state.pt").exists())
            if root.exists()
            else []
        )

    def _snapshot(self) -> dict:
        import copy

        import torch

        return {
            "adapter": self.parallel.adapter_state(self.model),
            "optimizer": copy.deepcopy(self.parallel.optimizer_state(self.model, self.optimizer)),
            "scheduler": self.scheduler.state_dict(),
            "torch_rng": torch.get_rng_state(),
            "python_rng": random.getstate(),
            "step": 0,
            "progress": asdict(Progress()),
        }

    def save(self, step: int, progress: Progress) -> Path:
        """Write adapter, optimizer, scheduler, RNG states and progress to step-N, atomically. With
        several processes every rank takes part (the states are gathered), rank 0 alone writes, and
        each rank's RNG state is kept so that every rank resumes where it was."""
        import torch

        final = self.root / f"step-{step:07d}"
        state = {
            "adapter": self.parallel.adapter_state(self.model),
            "optimizer": self.parallel.optimizer_state(self.model, self.optimizer),
            "scheduler": self.scheduler.state_dict(),
            "torch_rng": torch.get_rng_state(),
            "python_rng": random.getstate(),
            "step": step,
            "progress": asdict(progress),
        }
        if self.parallel.world > 1:
            state["rank_torch_rng"] = self.parallel.all_gather(torch.get_rng_state())
        if self.parallel.is_main:
            self._write(final, state)
        self.parallel.barrier()  # no rank reads (a rollback) or goes on before the file is complete
        return final

    def _write(self, final: Path, state: dict) -> None:
        import torch

        self.root.mkdir(parents=True, exist_ok=True)
        staging = self.root / f".{final.name}.partial"
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir()
        torch.save(state, staging / "state.pt")
        shutil.rmtree(final, ignore_errors=True)
        staging.rename(final)
        for old in self.checkpoints()[: -self.keep]:
            shutil.rmtree(old, ignore_errors=True)

    def load_latest(self) -> tuple[int, Progress]:
        """Restore the newest readable checkpoint; (0, fresh progress) when there is none."""
        import torch

        for checkpoint in reversed(self.checkpoints()):
            try:
                state = torch.load(checkpoint / "state.pt", weights_only=True)
            except pickle.UnpicklingError as error:
                if "weights only load failed" in str(error).lower():
                    raise CheckpointRefused(refused_checkpoint_message(checkpoint, error)) from None
                self.on_event(
                    "unreadable checkpoint skipped", {"path": str(checkpoint), "reason": str(error)}
                )
                continue
            except (OSError, RuntimeError, EOFError) as error:
                self.on_event(
                    "unreadable checkpoint skipped", {"path": str(checkpoint), "reason": str(error)}
                )
                continue
            return self._restore(state)
        return 0, Progress()

    def restore_initial(self) -> tuple[int, Progress]:
        """Back to the state before the first step."""
        return self._restore(self._initial)

    def _restore(self, state: dict) -> tuple[int, Progress]:
        import torch

        self.parallel.load_adapter_state(self.model, state["adapter"])
        self.parallel.load_optimizer_state(self.model, self.optimizer, state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        torch.set_rng_state(self._rank_rng(state))
        random.setstate(state["python_rng"])
        progress = Progress.from_dict(state["progress"])
        self.scale_learning_rate(progress.lr_scale)
        return int(state["step"]), progress

    def _rank_rng(self, state: dict):
        """This rank's RNG state from a checkpoint: its own when the checkpoint has one per rank for
        the same process count, else the one rank 0 had (a run resumed with another process count).
        """
        per_rank = state.get("rank_torch_rng")
        if per_rank and len(per_rank) == self.parallel.world:
            return per_rank[self.parallel.rank]
        return state["torch_rng"]

    def scale_learning_rate(self, scale: float) -> None:
        """Scale the schedule's peak LR (after a rollback) and the current LR with it."""
        self.scheduler.base_lrs = [self.peak_learning_rate * scale for _ in self.scheduler.base_lrs]
        for group, base, schedule in zip(
            self.optimizer.param_groups, self.scheduler.base_lrs, self.scheduler.lr_lambdas
        ):
            group["lr"] = base * schedule(self.scheduler.last_epoch)
        self.scheduler._last_lr = [group["lr"] for group in self.optimizer.param_groups]
