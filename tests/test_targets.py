"""Labeling strategies and mask conventions on hand-made instance maps."""

from __future__ import annotations

import numpy as np
import pytest

from cellseg.data.pipeline.masks import MaskDecoder
from cellseg.data.pipeline.targets import BinaryTarget, BoundaryTarget, FromChannelTarget
from cellseg.errors import ConfigError, DataError

# Two touching cells (1, 2) and one isolated cell (3); -1 marks an unannotated pixel.
INSTANCES = np.array(
    [
        [0, 0, 0, 0, 0, 0, 0, 0],
        [0, 1, 1, 1, 2, 2, 2, 0],
        [0, 1, 1, 1, 2, 2, 2, 0],
        [0, 1, 1, 1, 2, 2, 2, 0],
        [0, 0, 0, 0, 0, 0, 0, 0],
        [0, 0, 3, 3, 3, 0, 0, -1],
        [0, 0, 3, 3, 3, 0, 0, 0],
        [0, 0, 3, 3, 3, 0, 0, 0],
    ],
    dtype=np.int32,
)


def test_binary_target_and_ignore_index():
    classes = BinaryTarget()(INSTANCES)
    assert classes.dtype == np.int64
    assert classes[2, 2] == 1 and classes[0, 0] == 0 and classes[5, 7] == -100


def test_boundary_target_separates_touching_cells():
    classes = BoundaryTarget(width=1)(INSTANCES)
    # 3x3 cells with width 1: the centre is interior, the ring is border - including the shared edge.
    assert classes[2, 2] == 1 and classes[2, 5] == 1 and classes[6, 3] == 1
    assert classes[2, 3] == 2 and classes[2, 4] == 2  # both sides of the contact between cells 1 and 2
    assert (classes[1, 1:7] == 2).all() and classes[0, 0] == 0 and classes[5, 7] == -100
    assert classes[7, 3] == 1  # the image edge is not a cell border: cell 3 goes on beyond it
    assert (classes == 1).sum() == 4  # touching cells 1 and 2 keep one interior pixel each, apart


def test_boundary_target_validates_width():
    with pytest.raises(ConfigError, match=r"target\.width"):
        BoundaryTarget(width=0)


def test_from_channel_thresholds_fills_holes_and_drops_small_objects():
    image = np.zeros((2, 40, 40), dtype=np.uint16)
    image[1, 5:15, 5:15] = 1000  # a nucleus with a hole
    image[1, 9:11, 9:11] = 0
    image[1, 25:35, 20:30] = 900
    image[1, 2, 36] = 1000  # a speck: below min_size
    target = FromChannelTarget(channel="dapi", method="otsu", smooth_sigma=0, min_size=4)
    instances = target.instances_from_image(image, ("bf", "dapi"))
    assert instances.max() == 2
    assert instances[10, 10] > 0  # hole filled
    assert instances[2, 36] == 0
    assert target(instances)[30, 25] == 1
    fixed = FromChannelTarget(
        channel=1, method="fixed", threshold=0.5, smooth_sigma=0, min_size=0, fill_holes=False
    )
    assert fixed.instances_from_image(image, ("bf", "dapi"))[10, 10] == 0
    with pytest.raises(ConfigError, match=r"target\.threshold"):
        FromChannelTarget(channel=1, method="fixed")


@pytest.mark.parametrize(
    "decoder,mask,cells",
    [
        (MaskDecoder(foreground=[255]), np.array([[0, 255], [255, 0]], np.uint8), [[0, 1], [1, 0]]),
        (MaskDecoder(foreground=[1]), np.array([[0, 1], [1, 1]], np.uint8), [[0, 1], [1, 1]]),
        # seed 000: RGB masks, white = background, a pixel is cell when min(R, G, B) < 250
        (
            MaskDecoder(reduce="min", threshold=249, invert=True),
            np.array([[[255, 10]], [[255, 250]], [[255, 255]]], np.uint8),
            [[0, 1]],
        ),
    ],
)
def test_mask_conventions_are_configuration(decoder, mask, cells):
    assert (decoder.decode(mask) > 0).astype(int).tolist() == cells


def test_semantic_masks_become_4_connected_instances_and_ignore_values():
    mask = np.array([[255, 0, 255], [0, 255, 0], [7, 0, 0]], np.uint8)
    instances = MaskDecoder(foreground=[255], ignore=[7]).decode(mask)
    assert instances.max() == 3  # diagonal neighbours are separate cells (4-connectivity)
    assert instances[2, 0] == -1


def test_unexpected_mask_values_name_the_file_and_values():
    with pytest.raises(DataError, match=r"m\.png: mask values \[3\]"):
        MaskDecoder(foreground=[255]).decode(np.array([[0, 3, 255]], np.uint8), "m.png")


def two_touching_disks_and_an_ellipse() -> np.ndarray:
    """A stain plane (1, 120, 200): two touching disks of radius 16 (centres 26 px apart) and, apart, an
    elongated nucleus (semi-axes 40 and 10 px) lying diagonally, whose distance ridge is one pixel wide."""
    rows, cols = np.mgrid[:120, :200]
    disks = ((rows - 40) ** 2 + (cols - 30) ** 2 < 16**2) | ((rows - 40) ** 2 + (cols - 56) ** 2 < 16**2)
    along, across = ((rows - 60) + (cols - 140)) / np.sqrt(2), ((rows - 60) - (cols - 140)) / np.sqrt(2)
    ellipse = (along / 40) ** 2 + (across / 10) ** 2 < 1
    return ((disks | ellipse) * 1000).astype(np.uint16)[None]


@pytest.mark.parametrize("depth", [1, 2, 5])
def test_from_channel_splits_touching_nuclei_at_their_neck_and_keeps_an_elongated_one_whole(depth):
    image = two_touching_disks_and_an_ellipse()
    merged = FromChannelTarget(channel=0, smooth_sigma=0, min_size=0).instances_from_image(image, ("dapi",))
    assert merged.max() == 2  # a threshold merges the touching pair
    target = FromChannelTarget(channel=0, smooth_sigma=0, min_size=0, split_depth=depth)
    instances = target.instances_from_image(image, ("dapi",))
    assert instances.max() == 3
    assert instances[40, 30] != instances[40, 56]  # the two disk centres are two nuclei
    diagonal = instances[np.arange(35, 85), np.arange(115, 165)]
    assert len(np.unique(diagonal)) == 1  # the ellipse's long axis is one nucleus
    left, right = np.bincount(instances.ravel())[[instances[40, 30], instances[40, 56]]]
    assert abs(int(left) - int(right)) < 0.05 * left  # cut at the neck, halfway between the centres
    assert np.array_equal(instances > 0, merged > 0)  # splitting moves no pixel in or out


def test_from_channel_split_depth_must_be_positive_pixels():
    with pytest.raises(ConfigError, match=r"target\.split_depth is 0"):
        FromChannelTarget(channel=0, split_depth=0)
