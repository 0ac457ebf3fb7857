"""Block-wise blending: the same values as a whole-image accumulator, in memory that does not grow with
the image's width."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cellseg.inference import blending
from cellseg.inference.blending import blended_blocks, predict_tiled
from cellseg.inference.tiling import TileGrid, TileSettings, blend_window, cut_tile

_KERNEL = torch.Generator().manual_seed(0)
_WEIGHTS = torch.randn(3, 2, 5, 5, generator=_KERNEL)


def _zero_padded_network(tiles: torch.Tensor) -> torch.Tensor:
    """A 'network' whose outputs near a tile's border differ from the same pixels seen inside another
    tile (zero padding), so every overlap's blend matters."""
    return torch.sigmoid(torch.nn.functional.conv2d(tiles, _WEIGHTS, padding=2))


def _whole_image_blend(image: torch.Tensor, settings: TileSettings, multiple: int) -> np.ndarray:
    """The reference: every tile's weighted outputs added into whole-image sums, divided at the end."""
    height, width = image.shape[-2:]
    grid = TileGrid.plan(height, width, settings, multiple)
    window = blend_window(grid.tile_h, grid.tile_w, settings.blend, settings.sigma_scale)
    sums, weights = torch.zeros(3, height, width), torch.zeros(height, width)
    for top, left in grid.positions():
        outputs = _zero_padded_network(cut_tile(image, top, left, grid)[None])[0]
        y0, x0 = max(top - grid.margin, 0), max(left - grid.margin, 0)
        y1, x1 = min(top + grid.tile_h - grid.margin, height), min(left + grid.tile_w - grid.margin, width)
        ty, tx = y0 - (top - grid.margin), x0 - (left - grid.margin)
        piece = window[ty : ty + y1 - y0, tx : tx + x1 - x0]
        sums[:, y0:y1, x0:x1] += outputs[:, ty : ty + y1 - y0, tx : tx + x1 - x0] * piece
        weights[y0:y1, x0:x1] += piece
    return (sums / weights).numpy()


@pytest.mark.parametrize(
    ("shape", "settings", "multiple"),
    [
        ((200, 330), TileSettings(size=64, overlap=0.25, batch_size=3), 16),
        ((97, 61), TileSettings(size=32, overlap=0.5, padding="none", batch_size=5), 1),
        ((150, 150), TileSettings(size=48, overlap=0.3, blend="constant", batch_size=1), 8),
        ((40, 300), TileSettings(size=64, overlap=0.25), 32),  # one tile row, taller than the image
        ((20, 25), TileSettings(size=64), 16),  # one tile, the image mirrored and replicated around it
        ((128, 128), TileSettings(size=32, overlap=0.0, padding="none"), 1),  # no overlap: no carry
    ],
)
def test_blocks_equal_the_whole_image_accumulation_bit_for_bit(shape, settings, multiple):
    image = torch.rand(2, *shape, generator=torch.Generator().manual_seed(1))
    expected = _whole_image_blend(image, settings, multiple)
    got = predict_tiled(_zero_padded_network, image, settings, multiple=multiple)
    np.testing.assert_array_equal(got, expected)


def test_blocks_cover_every_pixel_once_top_to_bottom():
    image = torch.rand(1, 130, 170)
    settings = TileSettings(size=32, overlap=0.25, batch_size=4)
    grid = TileGrid.plan(130, 170, settings, 8)
    covered = np.zeros((130, 170), int)
    tops = []
    for block in blended_blocks(
        _zero_padded_network,
        lambda t, lft: cut_tile(image, t, lft, grid)[:2].expand(2, -1, -1),
        grid,
        settings,
    ):
        covered[block.rows, block.cols] += 1
        tops.append(block.top)
    assert (covered == 1).all()
    assert tops == sorted(tops)


def test_wide_images_carry_through_a_scratch_file_with_the_same_values(monkeypatch):
    image = torch.rand(2, 90, 260, generator=torch.Generator().manual_seed(2))
    settings = TileSettings(size=32, overlap=0.25)
    in_memory = predict_tiled(_zero_padded_network, image, settings, multiple=8)
    monkeypatch.setattr(blending, "CARRY_IN_MEMORY_BYTES", 0)
    files: list[object] = []
    original = blending._Carry.__init__

    def recording_init(self, *args, **kwargs):
        original(self, *args, **kwargs)
        files.append(self.path)

    monkeypatch.setattr(blending._Carry, "__init__", recording_init)
    on_disk = predict_tiled(_zero_padded_network, image, settings, multiple=8)
    assert files and files[0] is not None  # the scratch file was used ...
    assert not files[0].exists()  # ... and removed afterwards
    np.testing.assert_array_equal(on_disk, in_memory)


def test_memory_held_does_not_grow_with_the_image_width():
    """The largest tensor alive between blocks is a tile row's window, whatever the width."""
    settings = TileSettings(size=32, overlap=0.25)
    widths = {}
    for width in (128, 1024):
        image = torch.rand(1, 64, width)
        grid = TileGrid.plan(64, width, settings, 8)
        reader = lambda t, lft, image=image, grid=grid: cut_tile(image, t, lft, grid).expand(2, -1, -1)  # noqa: E731
        widest = 0
        for block in blended_blocks(_zero_padded_network, reader, grid, settings):
            widest = max(widest, block.values.shape[2])
        widths[width] = widest
    assert widths[1024] == widths[128] <= settings.size
