"""Overlap-tile prediction of images of any size (the U-Net paper's strategy, with blended tiles).

The image is mirror-padded at its borders (so border pixels see context, as in Ronneberger et al.;
``padding=auto`` does so for class outputs only, see :meth:`TileSettings.for_outputs`),
cut into overlapping tiles that are predicted in batches, and the tile outputs are blended back with a
weight window: ``gaussian`` (σ = ``sigma_scale`` × tile size, as nnU-Net and MONAI) down-weights tile
borders, where convolutions saw zero padding; ``constant`` averages the overlaps. This module places
the tiles and cuts them; :mod:`cellseg.inference.blending` blends them block by block, so memory is set
by the tile batch, not by the image (its ``predict_tiled`` gathers the blocks of an image held whole).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace

import numpy as np
import torch

from cellseg.errors import ConfigError

BLEND_MODES = ("gaussian", "constant")
PADDING_MODES = ("auto", "mirror", "none")

#: Maps a batch of tiles (B, C, h, w) to per-class probabilities (B, K, h, w).
BatchPredictor = Callable[[torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class TileSettings:
    """How an image is cut into tiles (the ``tile`` config node of predict and evaluate)."""

    size: int = 512
    overlap: float = 0.25
    blend: str = "gaussian"
    sigma_scale: float = 0.125
    batch_size: int = 4
    padding: str = "auto"

    def __post_init__(self) -> None:
        if isinstance(self.size, bool) or not isinstance(self.size, int) or self.size < 16:
            raise ConfigError(f"tile.size must be an integer >= 16 pixels, got {self.size!r}.")
        if not 0.0 <= self.overlap < 1.0:
            raise ConfigError(f"tile.overlap is a fraction of the tile in [0, 1), got {self.overlap!r}.")
        if self.blend not in BLEND_MODES:
            raise ConfigError(f"tile.blend is '{self.blend}'; expected one of {', '.join(BLEND_MODES)}.")
        if not self.sigma_scale > 0:
            raise ConfigError(f"tile.sigma_scale must be > 0, got {self.sigma_scale!r}.")
        if self.batch_size < 1:
            raise ConfigError(f"tile.batch_size must be >= 1, got {self.batch_size!r}.")
        if self.padding not in PADDING_MODES:
            raise ConfigError(
                f"tile.padding is '{self.padding}'; expected one of {', '.join(PADDING_MODES)}."
            )

    def for_outputs(self, has_regression: bool) -> TileSettings:
        """``padding=auto`` made concrete: ``mirror`` for networks that output classes only, ``none`` for
        those with regression maps (distance, flows). Mirrored context shows a cell cut by the image
        border as a whole, mirrored cell, whose distance and flows are not those of the visible part the
        network learned on crops: measured on the synthetic validation images, flows AP50 0.84 mirrored
        against 1.00 unpadded, distance 0.90 against 0.94, while a boundary target scores 0.914 mirrored
        and 0.909 unpadded."""
        if self.padding != "auto":
            return self
        return replace(self, padding="none" if has_regression else "mirror")

    def margin(self, multiple: int = 1) -> int:
        """Mirrored pixels added on every side: half the overlap (so border pixels get context too),
        rounded up to the network's stride ``multiple``."""
        if self.padding == "none":
            return 0
        half_overlap = round(self.size * self.overlap / 2)
        return -(-half_overlap // multiple) * multiple


def tile_starts(length: int, tile: int, step: int, multiple: int = 1) -> list[int]:
    """Start offsets of tiles of ``tile`` pixels every ``step`` pixels, covering ``length`` pixels.

    Every start is a multiple of ``multiple`` (``step`` is one), so the last tile may reach past
    ``length`` by less than ``multiple`` pixels (the caller pads that far).
    """
    if tile >= length:
        return [0]
    last = -(-(length - tile) // multiple) * multiple
    return [*range(0, last, step), last]


def blend_window(height: int, width: int, mode: str = "gaussian", sigma_scale: float = 0.125) -> torch.Tensor:
    """The (height, width) weight of each tile pixel; its maximum is 1 and it is > 0 everywhere."""
    if mode == "constant":
        return torch.ones(height, width)

    def profile(n: int) -> torch.Tensor:
        centre, sigma = (n - 1) / 2, sigma_scale * n
        return torch.exp(-((torch.arange(n, dtype=torch.float64) - centre) ** 2) / (2 * sigma**2))

    window = torch.outer(profile(height), profile(width))
    window /= window.max()
    # Corner weights underflow towards 0 for small sigma: keep every pixel's weight positive.
    return window.clamp_min(max(float(window[window > 0].min()), 1e-6)).float()


@dataclass(frozen=True)
class TileGrid:
    """Tile positions over an image of ``height`` x ``width`` mirror-padded by ``margin``.

    With the network's stride ``multiple``, the margin, the step and every tile start are multiples of
    it: all tiles see the image at the same pooling phase (the phase of a whole-image pass over an
    image whose size is a multiple of the stride), so overlapping tiles agree. The padding reaches
    ``pad_end`` further on the bottom and right when the last tile needs it.
    """

    height: int
    width: int
    margin: int
    tile_h: int
    tile_w: int
    rows: tuple[int, ...]
    cols: tuple[int, ...]

    @classmethod
    def plan(cls, height: int, width: int, settings: TileSettings, multiple: int = 1) -> TileGrid:
        margin = settings.margin(multiple)
        padded_h, padded_w = height + 2 * margin, width + 2 * margin
        # An image smaller than a tile is one tile, padded up to the stride like the others would be.
        tile_h = min(settings.size, -(-padded_h // multiple) * multiple)
        tile_w = min(settings.size, -(-padded_w // multiple) * multiple)

        def step(tile: int) -> int:
            return max(multiple, int(tile * (1 - settings.overlap)) // multiple * multiple)

        rows = tile_starts(padded_h, tile_h, step(tile_h), multiple)
        cols = tile_starts(padded_w, tile_w, step(tile_w), multiple)
        return cls(height, width, margin, tile_h, tile_w, tuple(rows), tuple(cols))

    @property
    def pad_end(self) -> tuple[int, int]:
        """Extra bottom and right padding (beyond ``margin``) that the last row and column reach into."""
        return (
            max(self.rows[-1] + self.tile_h - self.height - 2 * self.margin, 0),
            max(self.cols[-1] + self.tile_w - self.width - 2 * self.margin, 0),
        )

    def __len__(self) -> int:
        return len(self.rows) * len(self.cols)

    def positions(self) -> Iterator[tuple[int, int]]:
        """Top-left corners in padded coordinates, row by row."""
        return ((top, left) for top in self.rows for left in self.cols)


def _source_index(start: int, length: int, size: int, reflect: bool) -> np.ndarray:
    """Image rows (or columns) of a tile that starts at ``start`` (may be < 0 or run past ``size``)."""
    index = np.arange(start, start + length)
    if not reflect:
        return index.clip(0, size - 1)
    index = np.abs(index)  # reflection about the first pixel, without repeating it (torch's "reflect")
    return np.where(index >= size, 2 * (size - 1) - index, index)


#: Rows and columns of the image a tile reads: slices inside the image, index arrays where it is mirrored.
TileIndex = tuple[slice | np.ndarray, slice | np.ndarray]


def tile_index(top: int, left: int, grid: TileGrid) -> TileIndex:
    """The image rows and columns of the tile at (``top``, ``left``) of the image mirror-padded by
    ``grid.margin`` (and ``pad_end``); an image too small to reflect that far is replicated at its border."""
    y0, x0 = top - grid.margin, left - grid.margin  # the tile in image coordinates
    if y0 >= 0 and x0 >= 0 and y0 + grid.tile_h <= grid.height and x0 + grid.tile_w <= grid.width:
        return slice(y0, y0 + grid.tile_h), slice(x0, x0 + grid.tile_w)
    reflect = grid.margin + max(grid.pad_end) < min(grid.height, grid.width)
    return (
        _source_index(y0, grid.tile_h, grid.height, reflect),
        _source_index(x0, grid.tile_w, grid.width, reflect),
    )


def cut_tile(image: torch.Tensor, top: int, left: int, grid: TileGrid) -> torch.Tensor:
    """The tile at (``top``, ``left``) of an image (C, H, W) held whole; only the tile is built, never a
    padded copy of the whole image."""
    rows, cols = tile_index(top, left, grid)
    if isinstance(rows, slice) and isinstance(cols, slice):
        return image[:, rows, cols]
    return image.index_select(-2, torch.as_tensor(rows)).index_select(-1, torch.as_tensor(cols))


def count_tiles(height: int, width: int, settings: TileSettings, multiple: int = 1) -> int:
    """How many tiles an image of ``height`` x ``width`` is cut into (for progress bars)."""
    return len(TileGrid.plan(height, width, settings, multiple))
