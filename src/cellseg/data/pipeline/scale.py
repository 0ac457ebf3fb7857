"""Resizing by a data set's ``scale``: Cellpose's diameter normalisation, as one factor.

A network sees a fixed window (its receptive field, the crop, the tile); cells much larger than that
window look alike from the inside, and maps that must point across a cell (flows towards its centre,
distances to its border) cannot be learned there. Cellpose therefore resizes every image so that cells
are about 30 px across. ``data.scale`` does the same for any target: 0.33 turns 90-px nuclei into 30-px
ones. Training, validation and ``cellseg.evaluate`` work on the resized images and truth (labels resized
by nearest neighbour, so ids stay ids); ``cellseg.predict`` resizes each new image by the checkpoint's
scale and its outputs back to the image's own size, so instances, masks and measurements are in the
image's pixels.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from cellseg.data.pipeline.dataset import SampleSet
from cellseg.errors import ConfigError

#: Scales outside this range are almost surely a typo (a diameter given where a factor is expected).
SCALE_RANGE = (0.05, 8.0)


def check_scale(scale: float, key: str = "data.scale") -> float:
    """``scale`` as a float within :data:`SCALE_RANGE`, else a ConfigError naming ``key``."""
    if isinstance(scale, bool) or not isinstance(scale, int | float) or not math.isfinite(scale):
        raise ConfigError(
            f"{key} is {scale!r}; expected a resize factor such as 0.5 (1.0: images as they are)."
        )
    low, high = SCALE_RANGE
    if not low <= scale <= high:
        raise ConfigError(
            f"{key} is {scale}; expected a factor in [{low}, {high}]: the factor that brings the cells to "
            "about 30 px across (e.g. 0.33 for 90-px nuclei)."
        )
    return float(scale)


def scaled_size(height: int, width: int, scale: float) -> tuple[int, int]:
    """The (height, width) of an image resized by ``scale``: rounded, at least 1 px."""
    return max(1, round(height * scale)), max(1, round(width * scale))


def resize_planes(planes: np.ndarray, height: int, width: int) -> np.ndarray:
    """(C, height, width) float32 of planes (C, H, W): bilinear, antialiased when shrinking (an average
    over each output pixel's footprint, so thin bright structures are not skipped)."""
    data = torch.from_numpy(np.ascontiguousarray(planes, dtype=np.float32))[None]
    if tuple(data.shape[-2:]) == (height, width):
        return data[0].numpy()
    shrinking = height < data.shape[-2] or width < data.shape[-1]
    resized = F.interpolate(
        data, size=(height, width), mode="bilinear", align_corners=False, antialias=shrinking
    )
    return resized[0].numpy()


def resize_image(image: np.ndarray, scale: float) -> np.ndarray:
    """An image (C, H, W) resized by ``scale`` in its own dtype (integers rounded and clipped to the
    dtype's range), so normalisation sees the values it would have seen."""
    height, width = scaled_size(*image.shape[-2:], scale)
    resized = resize_planes(image, height, width)
    if np.issubdtype(image.dtype, np.integer):
        info = np.iinfo(image.dtype)
        resized = np.clip(np.rint(resized), info.min, info.max)
    return resized.astype(image.dtype, copy=False)


def resize_labels(labels: np.ndarray, height: int, width: int) -> np.ndarray:
    """Labels (H, W) resized to (height, width) by nearest neighbour (pixel centres): ids stay ids, the
    unannotated value -1 stays -1; cells smaller than a resized pixel may vanish."""
    return labels[np.ix_(_nearest(height, labels.shape[0]), _nearest(width, labels.shape[1]))]


def _nearest(size: int, source: int) -> np.ndarray:
    """The source index (0..source-1) whose pixel centre is nearest each of ``size`` resized pixels."""
    return np.minimum(((np.arange(size) + 0.5) * source / size).astype(np.intp), source - 1)


def rescale_samples(samples: SampleSet, scale: float) -> SampleSet:
    """A split's images and instance maps resized by ``scale`` (the same set when it is 1)."""
    if scale == 1.0:
        return samples
    images = [resize_image(image, scale) for image in samples.images]
    instances = None
    if samples.instances is not None:
        instances = [
            resize_labels(labels, *image.shape[-2:])
            for labels, image in zip(samples.instances, images, strict=True)
        ]
    return SampleSet(images, instances, list(samples.names))
