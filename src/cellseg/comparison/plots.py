"""The comparison's figures (PNG, matplotlib's Agg canvas, no display needed).

- per metric, the settings as bars with their 95 % intervals and each replicate as a dot;
- per numeric swept axis, the metrics against it (log axis when it spans a decade): seed 001's
  cross-entropy weight trade-off figure;
- the validation curves of every setting (mean over seeds, band from the lowest to the highest seed);
- the same validation images predicted by each setting's best checkpoint, side by side.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from cellseg.comparison.settings import Axis
from cellseg.comparison.summary import Comparison
from cellseg.utils.io import atomic_path

DPI = 110


def _save(figure: Figure, path: Path) -> Path:
    figure.tight_layout()
    with atomic_path(path) as tmp:
        figure.savefig(tmp, format="png", dpi=DPI)
    return path


def bar_chart(comparison: Comparison, metric: str, path: Path) -> Path:
    rows = [r for r in comparison.rows if metric in r.metrics]
    figure = Figure(figsize=(max(4.0, 0.9 * len(rows) + 2), 3.6))
    axes = figure.add_subplot()
    rng = np.random.default_rng(0)
    for x, row in enumerate(rows):
        summary = row.metrics[metric]
        axes.bar(x, summary.mean, color="#4c72b0" if row.rank == 1 else "#9fb3d1", width=0.6)
        if summary.interval is not None:
            low, high = summary.mean - summary.interval.low, summary.interval.high - summary.mean
            axes.errorbar(x, summary.mean, yerr=[[low], [high]], color="black", capsize=4, lw=1)
        jitter = rng.uniform(-0.12, 0.12, len(summary.values))
        axes.scatter(x + jitter, summary.values, color="black", s=12, zorder=3)
    axes.set_xticks(range(len(rows)), [r.label for r in rows], rotation=30, ha="right", fontsize=8)
    axes.set_ylabel(f"{comparison.stage} {metric}")
    axes.set_title(f"{metric}: mean, 95 % interval, replicates", fontsize=10)
    return _save(figure, path)


def numeric_axes(comparison: Comparison) -> list[tuple[Axis, list[float]]]:
    """The swept axes whose values are all numbers (one value per setting row)."""
    found = []
    for axis in comparison.axes:
        values = axis.numeric_values([r.setting.values.get(axis.key) for r in comparison.rows])
        if values is not None and len(set(values)) > 1:
            found.append((axis, values))
    return found


def tradeoff_plot(
    comparison: Comparison, axis: Axis, xs: Sequence[float], metrics: Sequence[str], path: Path
) -> Path:
    figure = Figure(figsize=(5.5, 3.8))
    plot = figure.add_subplot()
    order = np.argsort(xs)
    for metric in metrics:
        points = [(xs[i], comparison.rows[i].metrics.get(metric)) for i in order]
        points = [(x, s) for x, s in points if s is not None]
        if not points:
            continue
        x = [p[0] for p in points]
        line = plot.plot(x, [p[1].mean for p in points], marker="o", label=metric)[0]
        low = [p[1].interval.low if p[1].interval else p[1].mean for p in points]
        high = [p[1].interval.high if p[1].interval else p[1].mean for p in points]
        plot.fill_between(x, low, high, color=line.get_color(), alpha=0.2)
    if min(xs) > 0 and max(xs) / min(xs) >= 10:
        plot.set_xscale("log")
    plot.set_xlabel(axis.key)
    plot.set_ylabel(comparison.stage)
    plot.set_title(f"trade-off over {axis.key} (mean, 95 % interval)", fontsize=10)
    plot.legend(fontsize=8)
    return _save(figure, path)


def curves_plot(comparison: Comparison, metric: str, path: Path) -> Path:
    figure = Figure(figsize=(6.0, 3.8))
    plot = figure.add_subplot()
    for row in comparison.rows:
        curves = [dict(run.curve(metric)) for run in row.setting.runs]
        epochs = sorted({e for c in curves for e in c})
        if not epochs:
            continue
        values = [[c[e] for c in curves if e in c] for e in epochs]
        line = plot.plot(epochs, [float(np.mean(v)) for v in values], label=row.label)[0]
        if len(curves) > 1:
            plot.fill_between(
                epochs, [min(v) for v in values], [max(v) for v in values], color=line.get_color(), alpha=0.2
            )
    plot.set_xlabel("epoch")
    plot.set_ylabel(f"val/{metric}")
    plot.set_title(f"validation {metric}: mean over seeds, band from lowest to highest", fontsize=10)
    plot.legend(fontsize=7)
    return _save(figure, path)


def panel_plot(
    inputs: Sequence[np.ndarray],
    truths: Sequence[np.ndarray],
    predictions: dict[str, Sequence[np.ndarray]],
    names: Sequence[str],
    path: Path,
) -> Path:
    """Rows of images; columns: input, truth, then each setting's predicted classes."""
    columns = 2 + len(predictions)
    figure = Figure(figsize=(2.2 * columns, 2.3 * len(inputs) + 0.4))
    grid = figure.subplots(len(inputs), columns, squeeze=False)
    classes = max([int(t.max(initial=0)) for t in truths] + [1])
    for i, (image, truth) in enumerate(zip(inputs, truths, strict=True)):
        cells = [("input", image, "gray"), ("truth", truth, "viridis")]
        cells += [(label, maps[i], "viridis") for label, maps in predictions.items()]
        for j, (title, array, cmap) in enumerate(cells):
            axes = grid[i][j]
            vmax = classes if cmap == "viridis" else None
            axes.imshow(array, cmap=cmap, vmin=0 if vmax else None, vmax=vmax, interpolation="nearest")
            axes.set_xticks([])
            axes.set_yticks([])
            if i == 0:
                axes.set_title(title if len(title) < 28 else title[:26] + "…", fontsize=7)
        grid[i][0].set_ylabel(names[i], fontsize=7)
    return _save(figure, path)


def display_plane(model_input: np.ndarray) -> np.ndarray:
    """The first model input channel scaled to 0..1 for display."""
    plane = np.asarray(model_input[0], dtype=np.float32)
    low, high = np.percentile(plane, [1, 99.8])
    return np.clip((plane - low) / (high - low), 0, 1) if math.isfinite(high - low) and high > low else plane
