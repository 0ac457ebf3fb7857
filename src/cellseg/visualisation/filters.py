"""The first convolution's filters of a trained network (seed 000's ``visualize_features``).

One tile per output filter. Each filter is mean-centred and divided by its largest absolute weight, as
seed 000 did, so every tile spans -1..1 on one diverging scale (red positive, blue negative, white
zero). Seed 000 showed its 3-channel kernels as RGB colours; here the kernels of the input channels are
shown **side by side** in input order (named above the grid), each in the same diverging scale, so any
number of channels reads the same way and the sign of every weight stays visible.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from matplotlib.figure import Figure
from torch import nn

from cellseg.models.encoders import unwrap
from cellseg.visualisation.figures import panel_figure

#: Tile width relative to the figure's ``panel`` size (a kernel needs less room than an image), the
#: pixels above each tile for its number, and the fewest columns (room for the title).
TILE_SCALE, TILE_TITLE, MIN_COLUMNS = 0.5, 16, 4


def first_conv(net: nn.Module) -> tuple[str, nn.Conv2d]:
    """The name and module of the first 2-D convolution (module order), inside any size wrapper."""
    for name, module in unwrap(net).named_modules():
        if isinstance(module, nn.Conv2d):
            return name, module
    raise ValueError(f"{type(unwrap(net)).__name__} has no nn.Conv2d layer.")


def scaled_filters(weight: np.ndarray) -> np.ndarray:
    """(O, I, kh, kw) weights with each output filter mean-centred and divided by its max abs value."""
    centred = weight - weight.mean(axis=(1, 2, 3), keepdims=True)
    peak = np.abs(centred).max(axis=(1, 2, 3), keepdims=True)
    return centred / np.where(peak > 0, peak, 1.0)


def side_by_side(kernels: np.ndarray) -> np.ndarray:
    """(I, kh, kw) kernels as one (kh, I * (kw + 1) - 1) image, NaN (blank) between them."""
    count, height, width = kernels.shape
    tile = np.full((height, count * (width + 1) - 1), np.nan, np.float32)
    for i, kernel in enumerate(kernels):
        tile[:, i * (width + 1) : i * (width + 1) + width] = kernel
    return tile


def filter_grid_shape(filters: int) -> tuple[int, int]:
    """(rows, cols) of the tiles: a near-square grid (8 x 8 for 64 filters), at least MIN_COLUMNS wide."""
    cols = max(math.ceil(math.sqrt(filters)), MIN_COLUMNS)
    return math.ceil(filters / cols), cols


def tile_size(panel: int, kernel_shape: tuple[int, int, int]) -> tuple[int, int]:
    """(width, height) in pixels of one filter's tile: ``panel * TILE_SCALE`` wide, as tall as its
    (I, kh, kw) kernels side by side need, plus its number."""
    count, height, width = kernel_shape
    tile_width = max(1, round(panel * TILE_SCALE))
    return tile_width, round(tile_width * height / (count * (width + 1) - 1)) + TILE_TITLE


def filters_figure(net: nn.Module, input_names: Sequence[str], panel: int = 200, title: str = "") -> Figure:
    """A grid of the first convolution's output filters, input channels side by side in each tile."""
    name, conv = first_conv(net)
    weight = scaled_filters(conv.weight.detach().float().cpu().numpy())
    out_channels, in_channels, kh, kw = weight.shape
    rows, cols = filter_grid_shape(out_channels)
    inputs = ", ".join(input_names) if len(input_names) == in_channels else f"{in_channels} channels"
    heading = (
        f"{out_channels} filters of '{name}' ({in_channels} x {kh} x {kw}), scaled to -1..1; "
        f"inputs left to right: {inputs}"
    )
    width, height = tile_size(panel, (in_channels, kh, kw))
    figure = panel_figure(rows, cols, width, f"{title}\n{heading}" if title else heading, panel_height=height)
    axes = np.asarray(figure.subplots(rows, cols, squeeze=False))
    image = None
    for index, ax in enumerate(axes.flat):
        ax.set_axis_off()
        if index < out_channels:
            image = ax.imshow(
                side_by_side(weight[index]), cmap="RdBu_r", vmin=-1, vmax=1, interpolation="nearest"
            )
            ax.set_title(str(index), fontsize=6, pad=1)
    if image is not None:
        bar = figure.colorbar(image, ax=axes, shrink=0.8, aspect=30)
        bar.ax.tick_params(labelsize=6)
    return figure
