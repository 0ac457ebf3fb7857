"""Tile outputs blended into finished blocks of the image, in memory set by the tile, not by the image.

Tiles are visited row by row, left to right (:meth:`TileGrid.positions`). Once a tile is added, the
image columns left of the next tile are complete for this tile row: their rows above the next tile row
are final and are handed out as a :class:`Block` (the weighted sum divided by the blend weights); their
rows that the next tile row overlaps go to a carry (a scratch file for wide images) until that row adds
its share. Memory thus holds one tile's window plus the batch, never a band of the whole image, and
every pixel's sum is made in the order a whole-image accumulator makes it, so the values are the same.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from cellseg.errors import ConfigError
from cellseg.inference.tiling import BatchPredictor, TileGrid, TileSettings, blend_window, cut_tile

#: Reads the tile whose top-left corner in padded coordinates is (top, left): (C, tile_h, tile_w).
TileReader = Callable[[int, int], torch.Tensor]

#: Carries larger than this many bytes live in a scratch file instead of memory.
CARRY_IN_MEMORY_BYTES = 16 * 2**20


@dataclass(frozen=True)
class Block:
    """Final outputs (P, h, w) float32 of the image rows ``top``.. and columns ``left``.."""

    top: int
    left: int
    values: np.ndarray

    @property
    def rows(self) -> slice:
        return slice(self.top, self.top + self.values.shape[1])

    @property
    def cols(self) -> slice:
        return slice(self.left, self.left + self.values.shape[2])


def _spans(
    starts: tuple[int, ...], tile: int, margin: int, size: int
) -> tuple[list[int], list[int], list[int]]:
    """Per tile row (or column): the image range [lo, hi) it covers and ``done``, the end of the range
    that no later tile row reaches (the next row's start, the image's end after the last row)."""
    lo = [min(max(s - margin, 0), size) for s in starts]
    hi = [min(max(s + tile - margin, 0), size) for s in starts]
    return lo, hi, [*lo[1:], size]


class _Carry:
    """Partial sums (outputs and weight) of the rows the next tile row overlaps, across the image's width.

    Stored column-major (width, planes, rows) so a range of columns is one contiguous piece; in a scratch
    file that is mapped only while a piece is read or written (mapped pages count as resident memory).
    """

    def __init__(self, planes: int, rows: int, width: int, folder: Path | None) -> None:
        self.shape = (width, planes, rows)
        self.path: Path | None = None
        self.array: np.ndarray | None = None
        if folder is None:
            self.array = np.zeros(self.shape, dtype=np.float32)
        else:
            self.path = folder / "carry.f32"
            with open(self.path, "wb") as handle:  # sparse: reads as zeros until written
                handle.truncate(int(np.prod(self.shape)) * 4)

    def _mapped(self, mode: str) -> np.ndarray:
        if self.array is not None:
            return self.array
        return np.memmap(self.path, dtype=np.float32, mode=mode, shape=self.shape)

    def read(self, left: int, right: int, rows: int) -> torch.Tensor:
        """(planes, rows, right - left) of the carried sums."""
        stored = self._mapped("r")
        piece = np.array(stored[left:right, :, :rows]).transpose(1, 2, 0)
        del stored
        return torch.from_numpy(np.ascontiguousarray(piece))

    def write(self, left: int, values: torch.Tensor) -> None:
        """Keeps (planes, rows, w) partial sums of columns ``left``.. for the next tile row."""
        stored = self._mapped("r+")
        stored[left : left + values.shape[2], :, : values.shape[1]] = values.permute(2, 0, 1).numpy()
        if isinstance(stored, np.memmap):
            stored.flush()
        del stored


class _RowWindow:
    """The partial sums of one tile row over the columns not yet handed out (at most a tile wide)."""

    def __init__(self, grid: TileGrid, tile_window: torch.Tensor, scratch: Path | None) -> None:
        self.grid = grid
        self.tile_window = tile_window
        self.scratch = scratch
        self.row_lo, self.row_hi, self.row_done = _spans(grid.rows, grid.tile_h, grid.margin, grid.height)
        self.col_lo, self.col_hi, self.col_done = _spans(grid.cols, grid.tile_w, grid.margin, grid.width)
        self.carry: _Carry | None = None
        self.carried = 0  # rows at the top of the current tile row that the previous one reached
        # The current tile row's partial sums over image columns [left, right): planes x rows x columns.
        self.sums = torch.zeros(0, 0, 0)
        self.left = self.right = 0

    def _carry_for(self, planes: int) -> _Carry:
        if self.carry is None:
            rows = max(hi - done for hi, done in zip(self.row_hi, self.row_done, strict=True))
            big = planes * max(rows, 1) * self.grid.width * 4 > CARRY_IN_MEMORY_BYTES
            self.carry = _Carry(planes, max(rows, 1), self.grid.width, self.scratch if big else None)
        return self.carry

    def add(self, row: int, col: int, outputs: torch.Tensor) -> Iterator[Block]:
        """Adds tile (``row``, ``col``)'s outputs (P, tile_h, tile_w); yields the blocks it completes."""
        grid = self.grid
        top, bottom = self.row_lo[row], self.row_hi[row]
        x0, x1 = self.col_lo[col], self.col_hi[col]
        planes = outputs.shape[0] + 1  # the outputs, then the blend weight
        carry = self._carry_for(planes)
        if col == 0:
            self.sums = torch.zeros(planes, bottom - top, 0)
            self.left = self.right = 0
        if bottom <= top or x1 <= x0:
            return  # a tile entirely in the mirrored margin
        if x1 > self.right:  # new columns: zeros, plus what the tile row above left in them
            new = torch.zeros(planes, bottom - top, x1 - self.right)
            if self.carried:
                new[:, : self.carried] = carry.read(self.right, x1, self.carried)
            self.sums = torch.cat([self.sums, new], dim=2)
            self.right = x1
        ty = top - (grid.rows[row] - grid.margin)
        tx = x0 - (grid.cols[col] - grid.margin)
        weight = self.tile_window[ty : ty + bottom - top, tx : tx + x1 - x0]
        region = self.sums[:, :, x0 - self.left : x1 - self.left]
        region[:-1] += outputs[:, ty : ty + bottom - top, tx : tx + x1 - x0] * weight
        region[-1] += weight
        yield from self._hand_out(row, self.col_done[col])

    def _hand_out(self, row: int, done: int) -> Iterator[Block]:
        """Final rows of columns ``left``..``done`` as a block; the rows below them to the carry."""
        width = done - self.left
        if width <= 0:
            return
        final = self.row_done[row] - self.row_lo[row]
        complete = self.sums[:, :, :width]
        if final > 0:
            values = complete[:-1, :final] / complete[-1, :final]
            yield Block(self.row_lo[row], self.left, values.numpy())
        if complete.shape[1] > final:
            assert self.carry is not None
            self.carry.write(self.left, complete[:, final:])
        if done == self.grid.width:  # the tile row is finished: its overlap is the next row's carry
            self.carried = complete.shape[1] - final
        self.sums = self.sums[:, :, width:].clone()
        self.left = done


def blended_blocks(
    predict_batch: BatchPredictor,
    read_tile: TileReader,
    grid: TileGrid,
    settings: TileSettings,
    device: torch.device | str = "cpu",
    progress: Callable[[int], None] | None = None,
) -> Iterator[Block]:
    """The blended outputs of an image, as final blocks from top to bottom and left to right.

    ``read_tile`` cuts (and prepares) the tile at a position of ``grid``; ``predict_batch`` maps a
    batch of tiles (B, C, h, w) to outputs (B, P, h, w); ``progress`` is called with the number of
    tiles finished after each batch. Together the blocks cover every pixel of the image exactly once.
    """
    tile_window = blend_window(grid.tile_h, grid.tile_w, settings.blend, settings.sigma_scale)
    positions = list(grid.positions())
    columns = len(grid.cols)
    with tempfile.TemporaryDirectory(prefix="cellseg-blend-") as scratch:
        window = _RowWindow(grid, tile_window, Path(scratch))
        for first in range(0, len(positions), settings.batch_size):
            batch = positions[first : first + settings.batch_size]
            tiles = torch.stack([read_tile(top, left) for top, left in batch])
            with torch.inference_mode():
                outputs = predict_batch(tiles.to(device)).float().cpu()
            for offset, tile_outputs in enumerate(outputs):
                row, col = divmod(first + offset, columns)
                yield from window.add(row, col, tile_outputs)
            if progress is not None:
                progress(len(batch))


def gather_blocks(blocks: Iterable[Block], height: int, width: int) -> np.ndarray:
    """The blocks of one image put together: (P, height, width) float32, held whole."""
    outputs: np.ndarray | None = None
    for block in blocks:
        if outputs is None:
            outputs = np.empty((block.values.shape[0], height, width), dtype=np.float32)
        outputs[:, block.rows, block.cols] = block.values
    assert outputs is not None, "an image yields at least one block"
    return outputs


def predict_tiled(
    predict_batch: BatchPredictor,
    image: np.ndarray | torch.Tensor,
    settings: TileSettings,
    device: torch.device | str = "cpu",
    progress: Callable[[int], None] | None = None,
    multiple: int = 1,
) -> np.ndarray:
    """Blended outputs (P, H, W) float32 of a model-ready image (C, H, W) held whole (evaluate's split
    images; predict streams instead).

    ``multiple`` is the network's stride (:func:`cellseg.models.padding.input_multiple`);
    ``progress`` is called with the number of tiles finished after each batch.
    """
    image = torch.as_tensor(image, dtype=torch.float32)
    if image.ndim != 3:
        raise ConfigError(f"Tiled prediction needs an image of shape (C, H, W), got {tuple(image.shape)}.")
    grid = TileGrid.plan(*image.shape[-2:], settings, multiple)
    blocks = blended_blocks(
        predict_batch, lambda top, left: cut_tile(image, top, left, grid), grid, settings, device, progress
    )
    return gather_blocks(blocks, grid.height, grid.width)
