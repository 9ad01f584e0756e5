"""Evaluation plots as PNG files (matplotlib Agg, no display): base vs tuned bars per metric and the
per-example ROUGE-L of base vs tuned (scatter + histogram of the difference)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

# (key, label, lower is better)
PLOTTED_METRICS = (("answer_nll", "answer NLL", True), ("token_f1", "token F1", False),
                   ("rouge_l", "ROUGE-L", False), ("exact_match", "exact match", False),
                   ("format_compliance", "format compliance", False), ("general_qa_f1", "general QA F1", False),
                   ("general_qa_rouge_l", "general QA ROUGE-L", False),
                   ("general_perplexity", "general perplexity", True))


def _figure(width: float, height: float):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, height), dpi=100)
    FigureCanvasAgg(figure)
    return figure


def metrics_plot(path: Path, base: dict[str, Any], tuned: dict[str, Any] | None) -> Path | None:
    """One small bar panel per metric (each on its own scale), base vs tuned; None when nothing to plot."""
    shown = [(k, label, low) for k, label, low in PLOTTED_METRICS if base.get(k) is not None]
    if not shown:
        return None
    figure = _figure(2.2 * len(shown), 2.8)
    for index, (key, label, lower_better) in enumerate(shown, start=1):
        axis = figure.add_subplot(1, len(shown), index)
        names, values = ["base"], [base[key]]
        if tuned and tuned.get(key) is not None:
            names.append("tuned")
            values.append(tuned[key])
        axis.bar(names, values, color=["#8c8c8c", "#1f77b4"][: len(values)])
        axis.set_title(f"{label}\n({'lower' if lower_better else 'higher'} is better)", fontsize=8)
        axis.tick_params(labelsize=7)
        for x, value in enumerate(values):
            axis.annotate(f"{value:.3g}", (x, value), ha="center", va="bottom", fontsize=7)
    figure.tight_layout()
    figure.savefig(path)
    return path


def rouge_plot(path: Path, per_example: Sequence[dict[str, Any]]) -> Path | None:
    """Per-example ROUGE-L: tuned against base (scatter, diagonal = no change) and the histogram of
    tuned - base. None without tuned answers."""
    pairs = [(row["base_rouge_l"], row["tuned_rouge_l"]) for row in per_example if "tuned_rouge_l" in row]
    if not pairs:
        return None
    base, tuned = zip(*pairs, strict=True)
    figure = _figure(8, 3.4)
    scatter = figure.add_subplot(1, 2, 1)
    scatter.scatter(base, tuned, s=14, alpha=0.7)
    scatter.plot([0, 1], [0, 1], color="#999999", linewidth=0.8, linestyle="--")
    scatter.set(xlim=(0, 1), ylim=(0, 1), xlabel="base ROUGE-L", ylabel="tuned ROUGE-L",
                title=f"per example (n={len(pairs)})")
    histogram = figure.add_subplot(1, 2, 2)
    histogram.hist([t - b for b, t in pairs], bins=min(20, max(5, len(pairs) // 2)), color="#1f77b4")
    histogram.axvline(0, color="#999999", linewidth=0.8)
    histogram.set(xlabel="tuned - base ROUGE-L", ylabel="examples", title="change per example")
    figure.tight_layout()
    figure.savefig(path)
    return path


def write_plots(folder: Path, stem: str, base: dict[str, Any], tuned: dict[str, Any] | None,
                per_example: Sequence[dict[str, Any]]) -> list[Path]:
    """The evaluation's PNGs in `folder` (`<stem>-metrics.png`, `<stem>-rouge.png`); those drawn."""
    folder.mkdir(parents=True, exist_ok=True)
    drawn = [metrics_plot(folder / f"{stem}-metrics.png", base, tuned),
             rouge_plot(folder / f"{stem}-rouge.png", per_example)]
    return [path for path in drawn if path is not None]
