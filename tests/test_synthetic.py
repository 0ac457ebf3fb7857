"""The built-in synthetic data: exact shapes and determinism, sane instance labels, and a difficulty
that makes the choice of input channels matter (label-free brightfield hard, cytoplasm easy but not
trivial) while keeping every cell visible in the fluorescence channels."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage as ndi

from cellseg.data.sources.synthetic_cells import (
    CHANNEL_NAMES,
    SPLIT_KEYS,
    SyntheticCellsParams,
    generate_cells,
    generate_image,
)

SMALL = SyntheticCellsParams(size=64)


@pytest.fixture(scope="module")
def val_set() -> tuple[np.ndarray, np.ndarray]:
    """The default validation split of the framework (seed 0, 16 images of 256x256)."""
    return generate_cells(16, seed=0, split="val")


def normalise(channel: np.ndarray) -> np.ndarray:
    """Per-image percentile normalisation as the framework does it: 1st..99.8th percentile -> 0..1, clipped."""
    low, high = np.percentile(channel, (1.0, 99.8))
    return np.clip((channel.astype(np.float64) - low) / (high - low), 0.0, 1.0)


def channel(images: np.ndarray, name: str) -> np.ndarray:
    """One channel of every image, each normalised on its own."""
    return np.stack([normalise(image[CHANNEL_NAMES.index(name)]) for image in images])


def best_threshold_dice(values: np.ndarray, truth: np.ndarray) -> float:
    """Dice of the best single global threshold over all pixels pooled, either polarity.

    101 thresholds in [0, 1]; counts of ``x > t`` and ``x < t`` come from one sort, not 202 passes.
    """
    thresholds = np.linspace(0.0, 1.0, 101)
    every, inside = np.sort(values.ravel()), np.sort(values[truth])
    total, cells = every.size, inside.size
    above = total - np.searchsorted(every, thresholds, side="right")
    above_cells = cells - np.searchsorted(inside, thresholds, side="right")
    below = np.searchsorted(every, thresholds, side="left")
    below_cells = np.searchsorted(inside, thresholds, side="left")
    dice_above = 2 * above_cells / (above + cells)
    dice_below = 2 * below_cells / (below + cells)
    return float(max(dice_above.max(), dice_below.max()))


def touching(labels: np.ndarray) -> bool:
    """Whether a pixel of one cell is 4-adjacent to a pixel of another cell."""
    vertical = (labels[1:] != labels[:-1]) & (labels[1:] > 0) & (labels[:-1] > 0)
    horizontal = (labels[:, 1:] != labels[:, :-1]) & (labels[:, 1:] > 0) & (labels[:, :-1] > 0)
    return bool(vertical.any() or horizontal.any())


def test_shapes_dtypes_and_12_bit_range() -> None:
    images, instances = generate_cells(3, seed=0, split="train")
    assert images.shape == (3, len(CHANNEL_NAMES), 256, 256) and images.dtype == np.uint16
    assert instances.shape == (3, 256, 256) and instances.dtype == np.int32
    assert images.max() <= 4095
    # The camera offset keeps dark pixels above zero, and every channel has real contrast.
    assert 50 < np.percentile(images, 1) < 200
    assert (images.reshape(3, len(CHANNEL_NAMES), -1).std(axis=-1) > 10).all()


def test_size_parameter_sets_the_image_size() -> None:
    images, instances = generate_cells(2, seed=0, params=SMALL)
    assert images.shape == (2, len(CHANNEL_NAMES), 64, 64) and instances.shape == (2, 64, 64)
    assert all(labels.max() >= 1 for labels in instances)


def test_same_seed_same_data_other_seed_other_data() -> None:
    first, first_labels = generate_cells(2, seed=7, params=SMALL)
    again, again_labels = generate_cells(2, seed=7, params=SMALL)
    other, _ = generate_cells(2, seed=8, params=SMALL)
    np.testing.assert_array_equal(first, again)
    np.testing.assert_array_equal(first_labels, again_labels)
    assert not np.array_equal(first, other)


def test_image_does_not_depend_on_how_many_are_generated() -> None:
    three, three_labels = generate_cells(3, seed=1, split="val", params=SMALL)
    five, five_labels = generate_cells(5, seed=1, split="val", params=SMALL)
    np.testing.assert_array_equal(three, five[:3])
    np.testing.assert_array_equal(three_labels, five_labels[:3])


def test_image_i_comes_from_its_documented_stream() -> None:
    images, instances = generate_cells(3, seed=4, split="test", params=SMALL)
    image, labels = generate_image(np.random.default_rng([4, SPLIT_KEYS["test"], 2]), SMALL)
    np.testing.assert_array_equal(images[2], image)
    np.testing.assert_array_equal(instances[2], labels)


def test_splits_never_share_an_image() -> None:
    splits = [generate_cells(4, seed=0, split=split, params=SMALL)[0] for split in ("train", "val", "test")]
    every = np.concatenate(splits)
    distinct = {image.tobytes() for image in every}
    assert len(distinct) == len(every)


def test_instance_ids_are_consecutive_and_each_one_region(val_set: tuple[np.ndarray, np.ndarray]) -> None:
    _, instances = val_set
    for labels in instances:
        count = int(labels.max())
        assert count >= 5
        np.testing.assert_array_equal(np.unique(labels), np.arange(count + 1))
        for index, window in enumerate(ndi.find_objects(labels), start=1):
            _, regions = ndi.label(labels[window] == index)
            assert regions == 1, f"cell {index} is split into {regions} regions"


def test_cells_touch_in_most_images_and_some_stand_alone(val_set: tuple[np.ndarray, np.ndarray]) -> None:
    _, instances = val_set
    assert sum(touching(labels) for labels in instances) >= 12
    isolated = 0
    for labels in instances:
        for index, window in enumerate(ndi.find_objects(labels), start=1):
            grown = tuple(slice(max(s.start - 1, 0), s.stop + 1) for s in window)
            cell = labels[grown] == index
            isolated += not (labels[grown][ndi.binary_dilation(cell) & ~cell] > 0).any()
    assert isolated >= 10


def test_cells_cover_a_realistic_share_of_the_field(val_set: tuple[np.ndarray, np.ndarray]) -> None:
    _, instances = val_set
    assert 0.30 <= (instances > 0).mean() <= 0.55


def test_every_cell_has_a_nucleus_and_visible_cytoplasm(val_set: tuple[np.ndarray, np.ndarray]) -> None:
    images, instances = val_set
    nucleus, cytoplasm = channel(images, "nucleus"), channel(images, "cytoplasm")
    for labels, dna, whole_cell in zip(instances, nucleus, cytoplasm, strict=True):
        ids = np.arange(1, labels.max() + 1)
        assert np.min(ndi.maximum(dna, labels, ids)) > 0.2
        assert np.min(ndi.median(whole_cell, labels, ids)) > 1.5 * np.median(whole_cell[labels == 0])


def test_nuclei_and_mitochondria_light_up_inside_cells(val_set: tuple[np.ndarray, np.ndarray]) -> None:
    images, instances = val_set
    cells = instances > 0
    assert cells[channel(images, "nucleus") > 0.5].mean() > 0.99
    assert cells[channel(images, "mitochondria") > 0.5].mean() > 0.95


def test_a_global_threshold_fails_on_brightfield_but_works_on_cytoplasm(
    val_set: tuple[np.ndarray, np.ndarray],
) -> None:
    images, instances = val_set
    cells = instances > 0
    assert best_threshold_dice(channel(images, "brightfield"), cells) < 0.7
    assert 0.9 <= best_threshold_dice(channel(images, "cytoplasm"), cells) < 0.98
    # Mitochondria are sparse spots: a threshold on them is a poor cell mask.
    assert best_threshold_dice(channel(images, "mitochondria"), cells) < 0.85


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"split": "training"}, "split must be one of train, val, test"),
        ({"num_images": 0}, "num_images must be an integer >= 1"),
        ({"seed": -1}, "seed must be a non-negative integer"),
    ],
)
def test_generate_cells_rejects_bad_arguments(kwargs: dict, message: str) -> None:
    arguments = {"num_images": 1, "seed": 0, "split": "train", "params": SMALL, **kwargs}
    with pytest.raises(ValueError, match=message):
        generate_cells(**arguments)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"size": 16}, "size must be >= 32"),
        ({"cell_radius": (20.0, 10.0)}, "cell_radius must be"),
        ({"cells_per_image": (0, 5)}, "cells_per_image must be"),
        ({"touching_fraction": 1.5}, r"touching_fraction must be in \[0, 1\]"),
        ({"bit_depth": 20}, "bit_depth must be in"),
    ],
)
def test_params_reject_bad_values(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        SyntheticCellsParams(**kwargs)
