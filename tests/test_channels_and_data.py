"""Channel selection, normalisation, targets and the sample pipeline."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cellseg.data import BinaryTarget, ChannelStrategy, Normalization, SampleSet, SegmentationDataset
from cellseg.data.pipeline.dataset import random_crop

NAMES = ("nucleus", "cytoplasm", "membrane")


def _image() -> np.ndarray:
    rng = np.random.default_rng(0)
    return rng.integers(0, 4096, size=(3, 32, 40)).astype(np.uint16)


def test_specs_select_by_name_and_index_in_order():
    image = _image()
    strategy = ChannelStrategy(["membrane", 0, "-2"])
    out = strategy.bind(NAMES).apply(image, Normalization(method="minmax"))
    assert out.shape == (3, 32, 40) and out.dtype == np.float32
    for plane, source in zip(out, (image[2], image[0], image[1]), strict=True):
        expected = (source - source.min()) / (source.max() - source.min())
        np.testing.assert_allclose(plane, expected, rtol=1e-6)
    assert strategy.num_channels == 3


@pytest.mark.parametrize(
    "specs,message",
    [(["dapi"], "Unknown channel 'dapi'. The images have channels: nucleus, cytoplasm, membrane"),
     ([5], "Channel index 5 is out of range: the images have 3 channels"),
     ([], "non-empty list")],
)  # fmt: skip
def test_bad_specs_name_what_the_data_has(specs, message):
    with pytest.raises(ValueError, match=message):
        ChannelStrategy(specs).bind(NAMES)


def test_percentile_normalisation_ignores_hot_pixels():
    plane = np.full((100, 100), 100, dtype=np.uint16)
    plane[:50] = 200
    plane[0, 0] = 65535  # one saturated pixel must not set the scale
    out = Normalization()(plane)
    assert out[60, 60] == pytest.approx(0.0) and out[10, 10] == pytest.approx(1.0, abs=1e-3)
    assert out.max() <= 1.0
    assert not Normalization()(np.zeros((5, 5))).any()
    with pytest.raises(ValueError, match=r"normalization\.method"):
        Normalization(method="zscore")


def test_binary_target_marks_every_instance_as_cell():
    instances = np.array([[0, 1, 1], [2, 2, 0]], dtype=np.int32)
    assert BinaryTarget()(instances).tolist() == [[0, 1, 1], [1, 1, 0]]
    assert BinaryTarget().num_classes == 2


def test_random_crop_cuts_image_and_mask_alike_and_pads_small_images():
    image = np.arange(2 * 10 * 12, dtype=np.float32).reshape(2, 10, 12)
    mask = np.arange(10 * 12).reshape(10, 12)
    a, m = random_crop([image, mask], 6, np.random.default_rng(1))
    assert a.shape == (2, 6, 6) and m.shape == (6, 6)
    np.testing.assert_array_equal(a[0], m.astype(np.float32))
    a, m = random_crop([image, mask], 16, np.random.default_rng(1))
    assert a.shape == (2, 16, 16) and m.shape == (16, 16)


def test_dataset_yields_tensors_and_applies_augmentation_to_image_and_mask_alike():
    import albumentations as A

    image = _image()
    instances = np.zeros((32, 40), dtype=np.int32)
    instances[:, :10] = 1  # a cell on the left edge
    samples = SampleSet([image], [instances])
    flip = A.Compose([A.HorizontalFlip(p=1.0)])
    dataset = SegmentationDataset(
        samples, ChannelStrategy(["cytoplasm"]).bind(NAMES), BinaryTarget(), Normalization(), flip
    )
    item = dataset[0]
    assert item["image"].shape == (1, 32, 40) and item["image"].dtype == torch.float32
    assert item["mask"].dtype == torch.int64
    assert item["mask"][:, -10:].eq(1).all() and item["mask"][:, :-10].eq(0).all()
    plain = SegmentationDataset(
        samples, ChannelStrategy(["cytoplasm"]).bind(NAMES), BinaryTarget(), Normalization()
    )[0]
    torch.testing.assert_close(item["image"], plain["image"].flip(-1))
