"""Augmentations move image, classes and instance ids together; intensity changes touch only the image."""

from __future__ import annotations

import numpy as np
import pytest

from cellseg.data.pipeline.augment import CornerJitterAffine, elastic, fastai
from cellseg.errors import ConfigError


def _sample() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    instances = np.zeros((96, 96), np.float32)
    instances[20:50, 20:50] = 1
    instances[55:85, 40:70] = 2
    classes = (instances > 0).astype(np.float32)
    image = np.stack([classes, classes * 0.5], axis=-1).astype(np.float32)  # the image shows the cells
    return image, classes, instances


@pytest.mark.parametrize("pipeline", [elastic(preset=p, p=1.0) for p in range(4)] + [fastai()])
def test_geometry_is_shared_and_labels_stay_labels(pipeline):
    image, classes, instances = _sample()
    pipeline.set_random_seed(3)
    changed = False
    for _ in range(5):
        out = pipeline(image=image, masks=[classes, instances])
        moved_classes, moved_instances = out["masks"]
        assert set(np.unique(moved_instances)) <= {0.0, 1.0, 2.0}  # nearest-neighbour: no blended ids
        assert set(np.unique(moved_classes)) <= {0.0, 1.0}
        np.testing.assert_array_equal(moved_classes > 0, moved_instances > 0)
        cell = moved_classes > 0
        # the image's bright pixels are where the moved mask says cells are (up to interpolation edges)
        agreement = np.mean((out["image"][..., 0] > 0.5) == cell)
        assert agreement > 0.94
        changed |= not np.array_equal(moved_instances, instances)
    assert changed


def test_corner_jitter_zero_is_identity():
    image, classes, _ = _sample()
    out = CornerJitterAffine(alpha_affine=0.0, p=1.0)(image=image, mask=classes)
    np.testing.assert_allclose(out["mask"], classes)


def test_elastic_preset_and_overrides_are_validated():
    with pytest.raises(ConfigError, match=r"preset must be 0\.\.3"):
        elastic(preset=7)
    with pytest.raises(ConfigError, match="needs alpha, sigma and alpha_affine"):
        elastic(preset=None, alpha=10)


@pytest.mark.parametrize(
    ("augmentation", "normalization"),
    [("basic", "data.normalization.method=meanstd"), ("fastai", "+data.normalization.clip=false")],
)
def test_brightness_contrast_with_values_outside_0_1_is_refused_before_data_is_read(
    augmentation, normalization
):
    """albumentations clips float images to [0, 1] in brightness/contrast: meanstd images would lose
    every negative intensity, silently."""
    from cellseg.build import build_training
    from tests.conftest import compose_config

    cfg = compose_config([f"augmentation={augmentation}", normalization])
    with pytest.raises(ConfigError, match=r"RandomBrightnessContrast, which clips float images to \[0, 1\]"):
        build_training(cfg)


def test_brightness_contrast_clips_float_images_as_the_check_assumes():
    import albumentations as A

    image = np.linspace(-3, 3, 64, dtype=np.float32).reshape(8, 8, 1)
    out = A.RandomBrightnessContrast(brightness_limit=0.1, contrast_limit=0.1, p=1.0)(image=image)["image"]
    assert out.min() >= 0.0 and out.max() <= 1.0
