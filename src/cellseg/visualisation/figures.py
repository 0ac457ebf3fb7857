"""Fixed-size figures of square panels, written as PNG and, for a training run, into its TensorBoard.

Every figure is ``cols x panel`` by ``rows x panel + HEADER`` pixels at ``DPI``: its size follows from
what it shows, never from the length of a title (matplotlib's constrained layout fits titles inside).
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from cellseg.utils.io import atomic_path

DPI = 100
#: Pixels above the panels for the figure's title (up to three lines of 9 points).
HEADER = 48


def figure_size(rows: int, cols: int, panel: int, panel_height: int | None = None) -> tuple[int, int]:
    """(width, height) in pixels of a figure of ``rows`` x ``cols`` panels of ``panel`` px (square unless
    ``panel_height`` is given)."""
    return cols * panel, rows * (panel if panel_height is None else panel_height) + HEADER


def panel_figure(rows: int, cols: int, panel: int, title: str, panel_height: int | None = None) -> Figure:
    """An empty figure of the size :func:`figure_size` gives, its title (wrapped to fit) in the header band."""
    width, height = figure_size(rows, cols, panel, panel_height)
    figure = Figure(figsize=(width / DPI, height / DPI), dpi=DPI, layout="constrained")
    columns = max(20, width // 7)  # characters of the 9-point title per line
    figure.suptitle("\n".join(textwrap.fill(line, columns) for line in title.splitlines()), fontsize=9)
    return figure


def image_axes(figure: Figure, rows: int, cols: int) -> np.ndarray:
    """A (rows, cols) array of axes without ticks or frames, for images."""
    axes = np.asarray(figure.subplots(rows, cols, squeeze=False))
    for ax in axes.flat:
        ax.set_axis_off()
    return axes


def show_image(ax: Axes, image: np.ndarray, title: str, **options: object) -> None:
    """``image`` (H, W) or (H, W, 3) in a panel, square pixels, small title."""
    ax.imshow(image, interpolation="nearest", **options)
    ax.set_title(title, fontsize=7)
    ax.set_axis_off()


def save_png(figure: Figure, path: Path) -> Path:
    """The figure as ``path`` (PNG), written atomically: an interrupted run leaves no half a file."""
    with atomic_path(path) as tmp:
        figure.savefig(tmp, format="png", dpi=DPI)
    return path


def log_to_tensorboard(figure: Figure, run_dir: Path, tag: str, step: int) -> Path:
    """The figure as image ``tag`` at ``step`` in ``<run>/tensorboard/show``, beside the run's own logs."""
    from torch.utils.tensorboard import SummaryWriter

    folder = run_dir / "tensorboard" / "show"
    with SummaryWriter(str(folder)) as writer:
        writer.add_figure(tag, figure, global_step=step, close=False)
    return folder
