"""The overlap-tile core: tile placement, blending, padding, TTA, and agreement with whole-image prediction."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cellseg.data.sources.synthetic_cells import SyntheticCellsParams, generate_cells
from cellseg.errors import ConfigError
from cellseg.inference import Predictor, TileSettings, load_model, predict_tiled
from cellseg.inference.tiling import TileGrid, blend_window, cut_tile, tile_starts
from cellseg.inference.tta import transforms
from tests.inference_helpers import write_checkpoint


def _identity_probabilities(tiles: torch.Tensor) -> torch.Tensor:
    """A 'network' whose class-1 probability is the input itself: tiling must give the input back."""
    return torch.cat([1 - tiles[:, :1], tiles[:, :1]], dim=1)


@pytest.mark.parametrize(
    ("length", "tile", "step", "multiple"),
    [(300, 128, 96, 32), (100, 64, 48, 16), (64, 64, 48, 1), (129, 64, 32, 32)],
)
def test_tile_starts_cover_the_image_on_the_stride_grid(length, tile, step, multiple):
    starts = tile_starts(length, tile, step, multiple)
    assert starts[0] == 0 and all(s % multiple == 0 for s in starts)
    covered = np.zeros(length + multiple, bool)
    for s in starts:
        covered[s : s + tile] = True
    assert covered[:length].all()
    assert starts[-1] + tile - length < multiple or len(starts) == 1


def test_blend_windows_peak_at_one_and_stay_positive():
    gauss = blend_window(64, 96, "gaussian", 0.125)
    assert gauss.shape == (64, 96) and float(gauss.max()) == pytest.approx(1.0, abs=1e-3)
    assert (
        float(gauss.min()) > 0
        and torch.allclose(gauss, gauss.flip(0))
        and torch.allclose(gauss, gauss.flip(1))
    )
    assert gauss[32, 48] > gauss[0, 48] > gauss[0, 0]
    assert torch.equal(blend_window(8, 8, "constant"), torch.ones(8, 8))


@pytest.mark.parametrize("blend", ["gaussian", "constant"])
@pytest.mark.parametrize("shape", [(97, 203), (17, 203), (300, 300), (40, 40)])
def test_tiling_reconstructs_any_size_exactly_for_a_pointwise_model(shape, blend):
    """Odd sizes, an image smaller than the margin, larger than a tile, smaller than a tile."""
    image = np.random.default_rng(1).random((1, *shape), dtype=np.float32)
    settings = TileSettings(size=64, overlap=0.25, blend=blend, batch_size=3)
    out = predict_tiled(_identity_probabilities, image, settings, multiple=16)
    assert out.shape == (2, *shape) and out.dtype == np.float32
    np.testing.assert_allclose(out[1], image[0], atol=1e-5)
    np.testing.assert_allclose(out.sum(axis=0), 1.0, atol=1e-5)


@pytest.mark.parametrize(
    ("shape", "size", "multiple"), [((300, 257), 64, 32), ((17, 203), 64, 16), ((5, 9), 64, 32)]
)
def test_tiles_are_cut_as_from_the_whole_mirror_padded_image(shape, size, multiple):
    """Tiles are padded one by one (no padded copy of a large image), exactly as padding it whole would."""
    import torch.nn.functional as F

    image = torch.randn(2, *shape)
    grid = TileGrid.plan(*shape, TileSettings(size=size, overlap=0.25), multiple)
    bottom, right = grid.margin + grid.pad_end[0], grid.margin + grid.pad_end[1]
    mode = "reflect" if max(bottom, right) < min(shape) else "replicate"
    padded = F.pad(image[None], (grid.margin, right, grid.margin, bottom), mode=mode)[0]
    for top, left in grid.positions():
        assert torch.equal(
            cut_tile(image, top, left, grid), padded[:, top : top + grid.tile_h, left : left + grid.tile_w]
        )


def test_tile_larger_than_the_image_is_one_pass_padded_to_the_stride():
    grid = TileGrid.plan(50, 70, TileSettings(size=512, overlap=0.25), multiple=32)
    assert len(grid) == 1 and grid.margin == 64
    assert grid.tile_h % 32 == 0 and grid.tile_h >= 50 + 2 * 64 and grid.tile_w >= 70 + 2 * 64


def test_bad_tile_settings_name_the_key():
    with pytest.raises(ConfigError, match=r"tile\.overlap"):
        TileSettings(overlap=1.0)
    with pytest.raises(ConfigError, match=r"tile\.blend"):
        TileSettings(blend="linear")
    with pytest.raises(ConfigError, match=r"tile\.size"):
        TileSettings(size=4)


@pytest.mark.parametrize("mode", ["flips", "d4"])
def test_tta_transforms_invert_exactly(mode):
    x = torch.arange(2 * 3 * 4 * 5, dtype=torch.float32).reshape(2, 3, 4, 5)
    pairs = transforms(mode)
    assert len(pairs) == {"flips": 4, "d4": 8}[mode]
    outputs = {tuple(forward(x).flatten().tolist()) for forward, _ in pairs}
    assert len(outputs) == len(pairs)  # every transform is distinct
    for forward, inverse in pairs:
        assert torch.equal(inverse(forward(x)), x)


def test_d4_tta_makes_predictions_equivariant_to_flips_and_rotations(tmp_path):
    model = load_model(write_checkpoint(tmp_path / "m.ckpt"))
    predictor = Predictor(model, TileSettings(size=256, overlap=0.25), tta="d4", device="cpu")
    image = np.random.default_rng(2).integers(0, 255, (1, 64, 64)).astype(np.uint8)
    base = predictor.probabilities(image)
    np.testing.assert_allclose(predictor.probabilities(image[:, :, ::-1].copy()), base[:, :, ::-1], atol=1e-5)
    np.testing.assert_allclose(
        predictor.probabilities(np.rot90(image, axes=(1, 2)).copy()), np.rot90(base, axes=(1, 2)), atol=1e-5
    )
    plain = Predictor(model, TileSettings(size=256), device="cpu").probabilities(image)
    assert not np.allclose(
        plain[:, :, ::-1],
        Predictor(model, TileSettings(size=256), device="cpu").probabilities(image[:, :, ::-1].copy()),
        atol=1e-5,
    )


def _synthetic_image(size: int) -> np.ndarray:
    images, _ = generate_cells(1, 7, "test", SyntheticCellsParams(size=size))
    return images[0]


@pytest.mark.parametrize("size", [300, 257])
def test_tiled_prediction_matches_whole_image_prediction_without_seams(trained_run, size):
    """The README's stated tolerance: 256-px tiles, 25 % overlap, gaussian blending versus one pass."""
    predictor = Predictor.from_checkpoint(trained_run / "checkpoints" / "best.ckpt", device="cpu")
    image = _synthetic_image(size)
    predictor.tiles = TileSettings(size=256, overlap=0.25)
    grid = TileGrid.plan(size, size, predictor.tiles, predictor.multiple)
    assert len(grid) == 4
    tiled = predictor.probabilities(image)
    # One pass over the whole image with the same mirrored margin.
    predictor.tiles = TileSettings(size=2048, overlap=2 * grid.margin / 2048)
    assert len(TileGrid.plan(size, size, predictor.tiles, predictor.multiple)) == 1
    whole = predictor.probabilities(image)
    difference = np.abs(tiled - whole)
    assert difference.mean() < 2e-3
    assert (tiled.argmax(0) == whole.argmax(0)).mean() > 0.999
    # No seams: across every tile border, the tiled map changes no more than the whole-image map does.
    for start in grid.rows[1:]:
        edge = start - grid.margin
        for a, b in ((tiled, whole), (tiled.transpose(0, 2, 1), whole.transpose(0, 2, 1))):
            jump_tiled = np.abs(a[1, edge] - a[1, edge - 1]).mean()
            jump_whole = np.abs(b[1, edge] - b[1, edge - 1]).mean()
            assert jump_tiled < jump_whole + 0.01


def test_instances_of_a_boundary_prediction_separate_touching_cells():
    from cellseg.data.pipeline.targets import BinaryTarget, BoundaryTarget
    from cellseg.inference.decode import encode_mask, mask_values

    classes = np.zeros((12, 20), np.uint8)
    classes[2:10, 2:18] = 2  # one blob of border ...
    classes[3:9, 3:9] = 1  # ... around two interiors that touch through border pixels
    classes[3:9, 10:17] = 1
    labels = BoundaryTarget().instances_of_classes(classes)
    assert labels.max() == 2 and set(np.unique(labels[classes == 0])) == {0}
    assert (labels[classes > 0] > 0).all()  # border pixels are given to the cells
    assert BinaryTarget().instances_of_classes(classes > 0).max() == 1  # components merge them
    assert encode_mask(classes, mask_values([0, 100, 200], ("b", "i", "e"))).max() == 200
    with pytest.raises(ConfigError, match="one value per class"):
        mask_values([0, 1], ("b", "i", "e"))
