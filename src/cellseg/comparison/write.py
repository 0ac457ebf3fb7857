"""Everything a comparison writes into its folder: tables, plots, the panel and ``report.html``."""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path

from cellseg.comparison.panel import predict_panel
from cellseg.comparison.plots import bar_chart, curves_plot, numeric_axes, panel_plot, tradeoff_plot
from cellseg.comparison.report import render
from cellseg.comparison.runs import RunRecord, is_run
from cellseg.comparison.summary import Comparison
from cellseg.comparison.tables import csv_rows, markdown
from cellseg.inference.tiling import TileSettings
from cellseg.utils.io import write_atomic, write_csv_atomic

log = logging.getLogger(__name__)


def default_output(folders: Sequence[Path]) -> Path:
    """``<sweep>/comparison``: next to the runs, in the folder they share (never inside a run)."""
    common = Path(os.path.commonpath([str(f) for f in folders]))
    while is_run(common):
        common = common.parent
    return common / "comparison"


def _write_text(path: Path, text: str) -> None:
    write_atomic(path, lambda handle: handle.write(text.encode()))


def write_comparison(
    comparison: Comparison,
    runs: Sequence[RunRecord],
    output: Path,
    panel_images: int = 3,
    tiles: TileSettings | None = None,
    device: str = "auto",
    progress: bool = True,
) -> dict[str, Path]:
    """Write summary.csv, summary.md, plots/*.png and report.html into ``output``; returns the paths."""
    written = {"summary.csv": output / "summary.csv", "summary.md": output / "summary.md"}
    write_csv_atomic(written["summary.csv"], csv_rows(comparison))
    plots = [bar_chart(comparison, m, output / "plots" / f"bars_{_safe(m)}.png") for m in comparison.metrics]
    # Against a numeric axis: the monitored metric and the per-class accuracies (seed 001's trade-off).
    tradeoff = [m for m in comparison.metrics if m == comparison.monitor or m.startswith("acc_")]
    for axis, xs in numeric_axes(comparison):
        plots.append(
            tradeoff_plot(
                comparison, axis, xs, tradeoff, output / "plots" / f"tradeoff_{_safe(axis.key)}.png"
            )
        )
    plots.append(
        curves_plot(
            comparison, comparison.monitor, output / "plots" / f"curves_{_safe(comparison.monitor)}.png"
        )
    )
    notes: list[str] = []
    if panel_images > 0:
        panel = predict_panel(comparison, panel_images, tiles, device, progress)
        if panel is None:
            notes.append("No setting kept a best checkpoint: no prediction panel.")
        else:
            notes += panel.notes
            plots.append(
                panel_plot(
                    panel.inputs, panel.truths, panel.predictions, panel.names, output / "plots" / "panel.png"
                )
            )
    text = markdown(comparison) + "".join(f"- {n}\n" for n in notes)
    _write_text(written["summary.md"], text)
    written["report.html"] = output / "report.html"
    title = f"cellseg comparison: {output.parent}"
    _write_text(written["report.html"], render(comparison, runs, plots, title, notes))
    written.update({p.name: p for p in plots})
    return written


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in name)
