"""What a training run reports and leaves behind: each optimizer step's metrics (to the caller and
as one JSON line per step in the metrics file), the adapter folder (weights, tokenizer and the run's
config, written atomically) and the loss-curve PNG."""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any, Self

from tools.hardware import process_rss_mb
from tools.training.config import StepMetrics, TrainingConfig


class StepReporter:
    """This session's clock, tokens and peak memory, and each step's `StepMetrics` to `on_step` and
    the metrics file (appended to: a resumed run goes on in the same file). A context manager: the
    file is open while the steps run."""

    def __init__(
        self,
        total_steps: int,
        steps_per_epoch: int,
        on_step: Callable[[StepMetrics], None],
        metrics_path: str | None,
    ) -> None:
        self.total_steps, self.steps_per_epoch = total_steps, steps_per_epoch
        self.on_step, self.metrics_path = on_step, metrics_path
        self.started = time.monotonic()
        self.session_tokens = 0
        self.peak_rss_mb = 0.0
        self._file = None

    def __enter__(self) -> Self:
        self._file = Path(self.metrics_path).open("a") if self.metrics_path else None
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self._file:
            self._file.close()

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def step(
        self, step: int, loss: float, learning_rate: float, grad_norm: float, tokens: int
    ) -> None:
        """An accepted optimizer step that trained on `tokens` tokens."""
        self.session_tokens += tokens
        elapsed = self.elapsed()
        rss = process_rss_mb()
        self.peak_rss_mb = max(self.peak_rss_mb, rss)
        metrics = StepMetrics(
            step,
            self.total_steps,
            step / self.steps_per_epoch,
            loss,
            learning_rate,
            grad_norm,
            self.session_tokens / max(elapsed, 1e-9),
            elapsed,
            round(rss, 1),
        )
        self.on_step(metrics)
        if self._file:
            self._file.write(json.dumps(asdict(metrics)) + "\n")
            self._file.flush()


def write_adapter(
    output: Path, model: Any, tokenizer: Any, config: TrainingConfig, weights: dict | None
) -> None:
    """The adapter, its tokenizer and config, atomically (a staging folder renamed in); `weights`:
    the adapter's state dict when it had to be gathered (FSDP), else the model's own."""
    staging = output.with_name(output.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    model.save_pretrained(str(staging), **({"state_dict": weights} if weights is not None else {}))
    tokenizer.save_pretrained(str(staging))
    (staging / "training_config.json").write_text(config.model_dump_json(indent=2))
    shutil.rmtree(output, ignore_errors=True)
    staging.rename(output)


def loss_plot_path(config: TrainingConfig) -> Path | None:
    """Where the loss curve goes: `plot_path`, else loss_curve.png next to the metrics file."""
    if config.plot_path:
        return Path(config.plot_path)
    return Path(config.metrics_path).with_name("loss_curve.png") if config.metrics_path else None


def write_loss_plot(
    path: Path, history: Sequence[float], val_steps: Sequence[int], val_history: Sequence[float]
) -> Path:
    """A PNG of the training loss per step and the validation loss at its checks (Agg, no display).
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(7, 4), dpi=100)
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    axes.plot(range(1, len(history) + 1), history, label="train loss", linewidth=1)
    if val_history:
        axes.plot(val_steps[-len(val_history) :], val_history, "o-", label="val loss")
    axes.set_xlabel("optimizer step")
    axes.set_ylabel("loss per assistant token")
    axes.grid(alpha=0.3)
    axes.legend()
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    staging = path.with_name(path.name + ".partial.png")
    figure.savefig(str(staging))
    staging.replace(path)
    return path
