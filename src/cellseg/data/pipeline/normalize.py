"""Intensity normalisation of microscope images, per image and per channel, or per data set.

Microscope images come as uint8, uint16 (often 12-bit) or float, with offsets and a few saturated
pixels; mapping robust percentiles to [0, 1] makes channels and images comparable without letting
one hot pixel set the scale.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from cellseg.errors import ConfigError

METHODS = ("percentile", "minmax", "meanstd")


@dataclass
class Normalization:
    """How each channel of each image is scaled before it reaches the model.

    - ``percentile`` (default): the ``low``..``high`` percentiles of each image's channel map to 0..1
      (1..99.8 %), clipped to [0, 1] when ``clip``;
    - ``minmax``: min..max of each image's channel to 0..1 (seed 001's divide-by-max for images whose
      minimum is 0);
    - ``meanstd``: (x - mean[c]) / std[c] with one mean and std per source channel for the whole data
      set; left null, they are measured on the training split.
    """

    method: str = "percentile"
    low: float = 1.0
    high: float = 99.8
    clip: bool = True
    mean: Sequence[float] | None = None
    std: Sequence[float] | None = None

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ConfigError(
                f"normalization.method is '{self.method}'; expected one of {', '.join(METHODS)}."
            )
        if not 0.0 <= self.low < self.high <= 100.0:
            raise ConfigError(
                f"normalization.low/high are {self.low}/{self.high}; expected 0 <= low < high <= 100."
            )
        if self.std is not None and any(s <= 0 for s in self.std):
            raise ConfigError(f"normalization.std must be > 0 for every channel, got {list(self.std)}.")

    @property
    def needs_fit(self) -> bool:
        return self.method == "meanstd" and (self.mean is None or self.std is None)

    def fit(self, images: Iterable[np.ndarray]) -> None:
        """Measure per-channel mean and std over images (C, H, W) (for ``meanstd``)."""
        total = total_sq = count = 0.0
        for image in images:
            data = image.reshape(image.shape[0], -1).astype(np.float64)
            total = total + data.sum(axis=1)
            total_sq = total_sq + (data**2).sum(axis=1)
            count += data.shape[1]
        mean = np.asarray(total) / count
        std = np.sqrt(np.maximum(np.asarray(total_sq) / count - mean**2, 1e-12))
        self.mean, self.std = mean.tolist(), std.tolist()

    def __call__(self, channel: np.ndarray, index: int = 0) -> np.ndarray:
        """One 2-D plane (any dtype) of source channel ``index`` as float32."""
        data = channel.astype(np.float32, copy=False)
        return self.scale(data, index, self.range_of(data))

    def range_of(self, data: np.ndarray) -> tuple[float, float] | None:
        """The intensities that map to 0 and 1 for this plane's pixels (or a sample of them), as float32
        data; None for ``meanstd``, whose scale is the data set's, not the plane's."""
        if self.method == "meanstd":
            return None
        if self.method == "percentile":
            lo, hi = np.percentile(data, (self.low, self.high))
            return float(lo), float(hi)
        return float(data.min()), float(data.max())

    def scale(self, data: np.ndarray, index: int, intensity_range: tuple[float, float] | None) -> np.ndarray:
        """Float32 pixels of source channel ``index`` scaled with a range from :meth:`range_of` (measured on
        the whole plane or a sample of it, so that tiles of one image are scaled alike)."""
        data = data.astype(np.float32, copy=False)
        if self.method == "meanstd":
            if self.mean is None or self.std is None:
                raise ConfigError(
                    "normalization.method=meanstd has no mean/std yet: give them or fit on data."
                )
            return (data - np.float32(self.mean[index])) / np.float32(self.std[index])
        assert intensity_range is not None
        lo, hi = intensity_range
        span = float(hi - lo)
        if span <= 0.0:
            return np.zeros_like(data, dtype=np.float32)
        scaled = (data - np.float32(lo)) / np.float32(span)
        if self.clip:
            np.clip(scaled, 0.0, 1.0, out=scaled)
        return scaled

    def describe(self) -> dict:
        return {k: (list(v) if isinstance(v, (list, tuple)) else v) for k, v in vars(self).items()}
