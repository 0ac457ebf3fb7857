"""From per-class probabilities to what a user saves: class masks and cell probability (instance labels
come from the target's own decoding, :meth:`cellseg.data.pipeline.targets.Target.decode`)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from cellseg.data.pipeline.scale import resize_labels, resize_planes, scaled_size
from cellseg.data.pipeline.targets import Decoder
from cellseg.errors import ConfigError


def class_map(probabilities: np.ndarray) -> np.ndarray:
    """The most probable class of each pixel (H, W) uint8, from probabilities (K, H, W)."""
    return probabilities.argmax(axis=0).astype(np.uint8)


def foreground_probability(probabilities: np.ndarray) -> np.ndarray:
    """Probability that a pixel belongs to any cell class, 1 - p(background) (H, W) float32.

    For ISBI this is the cell-interior probability, the polarity of the challenge's labels.
    """
    return (1.0 - probabilities[0]).astype(np.float32)


def decoded_at_scale(decode: Decoder, scale: float) -> Decoder:
    """``decode`` run on outputs resized by ``scale``, the labels resized back by nearest neighbour.

    A checkpoint trained with ``data.scale`` validated and tuned its decoding on resized images, where its
    sizes count (``min_size``, the flows' steps and sinks): decoding the outputs at the image's own size
    would keep fragments 1 / scale^2 times smaller than those it learned to drop. Identity at scale 1.
    """
    if scale == 1.0:
        return decode

    def decode_resized(probabilities: np.ndarray, regression: np.ndarray | None) -> np.ndarray:
        height, width = probabilities.shape[-2:]
        size = scaled_size(height, width, scale)
        maps = None if regression is None else resize_planes(regression, *size)
        return resize_labels(decode(resize_planes(probabilities, *size), maps), height, width)

    return decode_resized


def default_mask_values(num_classes: int) -> list[int]:
    """0 / 255 for a binary model (what image viewers show); class ids for more classes."""
    return [0, 255] if num_classes == 2 else list(range(num_classes))


def mask_values(values: Sequence[int] | None, class_names: Sequence[str]) -> list[int]:
    """The pixel value written for each class (``mask.values``), checked against the classes."""
    if values is None:
        return default_mask_values(len(class_names))
    values = [int(v) for v in values]
    if len(values) != len(class_names):
        raise ConfigError(f"mask.values needs one value per class ({', '.join(class_names)}), got {values}.")
    if any(not 0 <= v <= 65535 for v in values):
        raise ConfigError(f"mask.values must be in 0..65535 (uint8 or uint16 masks), got {values}.")
    return values


def encode_mask(classes: np.ndarray, values: Sequence[int]) -> np.ndarray:
    """Class ids (H, W) to mask pixel values, uint8 when they fit, else uint16."""
    lookup = np.asarray(values, dtype=np.uint8 if max(values) <= 255 else np.uint16)
    return lookup[classes]
