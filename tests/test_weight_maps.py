"""U-Net border weight maps: values at known distances, class balance, agreement with a brute-force map."""

from __future__ import annotations

import math
import time

import numpy as np
import pytest
from scipy import ndimage as ndi

from cellseg.data.pipeline.weight_maps import UNetWeightMap, unet_weight_map, weight_map_to_image
from cellseg.errors import ConfigError
from cellseg.losses import CompositeLoss, CrossEntropyLoss, build_loss, weight_map_settings


def two_cells(gap: int) -> np.ndarray:
    """Two 10 x 10 squares side by side, ``gap`` background columns apart, in a 10-row strip."""
    labels = np.zeros((10, 20 + gap), np.int64)
    labels[:, :10] = 1
    labels[:, 10 + gap :] = 2
    return labels


def test_border_term_at_known_distances():
    labels = two_cells(gap=5)
    weights = unet_weight_map(labels, w0=10, sigma=5, class_weights=None)
    # Every gap pixel lies on the segment between the cells: d1 + d2 = gap + 1 = 6.
    expected = 1 + 10 * math.exp(-(6**2) / (2 * 5**2))
    np.testing.assert_allclose(weights[:, 10:15], expected, rtol=1e-6)
    np.testing.assert_array_equal(weights[labels > 0], 1.0)  # cell pixels: w_c only
    wide = unet_weight_map(two_cells(gap=11), w0=10, sigma=5, class_weights=None)
    np.testing.assert_allclose(wide[:, 10:21], 1 + 10 * math.exp(-(12**2) / 50), rtol=1e-6)


def test_pixels_beyond_the_cells_use_euclidean_distances():
    labels = np.zeros((30, 30), np.int64)
    labels[10, 10] = 1
    labels[10, 20] = 2
    weights = unet_weight_map(labels, w0=10, sigma=5)
    d1, d2 = 4.0, math.hypot(4, 10)  # pixel (14, 10): 4 below cell 1, (4, 10) away from cell 2
    assert weights[14, 10] == pytest.approx(1 + 10 * math.exp(-((d1 + d2) ** 2) / 50), rel=1e-6)


def test_one_or_no_cell_has_no_border_term_and_balance_is_inverse_frequency():
    one = np.zeros((8, 8), np.int64)
    one[2:4, 2:4] = 1
    np.testing.assert_array_equal(unet_weight_map(one), 1.0)
    balanced = unet_weight_map(one, class_weights="balanced")
    assert balanced[2, 2] == pytest.approx(64 / (2 * 4)) and balanced[0, 0] == pytest.approx(64 / (2 * 60))
    assert balanced.mean() == pytest.approx(1.0)
    np.testing.assert_array_equal(unet_weight_map(np.zeros((4, 4), np.int64), class_weights="balanced"), 1.0)
    fixed = unet_weight_map(one, class_weights=[0.5, 3])
    assert fixed[2, 2] == 3 and fixed[0, 0] == 0.5


def brute_force_weight_map(labels: np.ndarray, w0: float, sigma: float) -> np.ndarray:
    """The formula with one full-image distance transform per cell, no cut-off."""
    distances = np.sort(
        np.stack([ndi.distance_transform_edt(labels != i) for i in np.unique(labels[labels > 0])]), 0
    )
    border = w0 * np.exp(-((distances[0] + distances[1]) ** 2) / (2 * sigma**2))
    return 1 + np.where(labels == 0, border, 0)


def test_windowed_map_equals_brute_force_on_random_cells():
    rng = np.random.default_rng(0)
    labels = np.zeros((96, 96), np.int64)
    for k in range(1, 13):
        r, c = rng.integers(0, 90, 2)
        labels[r : r + rng.integers(3, 12), c : c + rng.integers(3, 12)] = k
    np.testing.assert_allclose(
        unet_weight_map(labels, w0=10, sigma=5), brute_force_weight_map(labels, 10, 5), atol=1e-4
    )


def test_map_is_fast_enough_for_the_data_pipeline():
    rows, cols = np.mgrid[:512, :512]
    cell_row, cell_col = np.minimum(rows // 51, 9), np.minimum(cols // 51, 9)  # a 10 x 10 grid of cells
    inside = np.hypot(rows - (cell_row * 51 + 25), cols - (cell_col * 51 + 25)) < 23
    labels = np.where(inside, cell_row * 10 + cell_col + 1, 0)  # 100 discs, 5 px apart
    UNetWeightMap()(labels)
    start = time.perf_counter()
    UNetWeightMap()(labels)
    assert time.perf_counter() - start < 1.0  # about 25 ms on a 2-core CPU


def test_weight_map_settings_are_validated_and_found_from_the_loss():
    with pytest.raises(ConfigError, match=r"loss\.sigma must be > 0"):
        UNetWeightMap(sigma=0)
    with pytest.raises(ConfigError, match="'balanced', null or"):
        UNetWeightMap(class_weights="inverse")
    with pytest.raises(ConfigError, match="two numbers"):
        UNetWeightMap(class_weights=[1, 2, 3])
    composite = CompositeLoss(2, {"unet_weighted_ce": {"w0": 5, "sigma": 3}, "dice": {}})
    assert UNetWeightMap(**weight_map_settings(composite)) == UNetWeightMap(w0=5, sigma=3)
    assert weight_map_settings(CrossEntropyLoss(2)) is None
    config = {"_target_": "cellseg.losses.UNetWeightedCrossEntropyLoss", "w0": 10.0, "sigma": 5.0}
    settings = weight_map_settings(build_loss(config, num_classes=2))
    assert UNetWeightMap(**settings).cache_key.startswith("unet_w0=10_sigma=5")
    image = weight_map_to_image(np.array([[1.0, 4.0]], np.float32))
    np.testing.assert_allclose(image, [[0.25, 1.0]])
