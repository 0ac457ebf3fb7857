"""Intensity normalisation of microscope images, per image and per channel.

Microscope images come as uint8, uint16 (often 12-bit) or float, with offsets and a few saturated
pixels; mapping robust percentiles to [0, 1] makes channels and images comparable without letting
one hot pixel set the scale.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from cellseg.errors import ConfigError

METHODS = ("percentile", "minmax")


@dataclass(frozen=True)
class Normalization:
    """How each channel of each image is scaled to roughly [0, 1] before it reaches the model.

    ``percentile`` maps the ``low``..``high`` percentiles to 0..1 (default 1..99.8 %, clipped to
    [0, 1] when ``clip``); ``minmax`` maps min..max to 0..1 (seed 001's divide-by-max behaviour
    for images whose minimum is 0).
    """

    method: str = "percentile"
    low: float = 1.0
    high: float = 99.8
    clip: bool = True

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ConfigError(
                f"normalization.method is '{self.method}'; expected one of {', '.join(METHODS)}."
            )
        if not 0.0 <= self.low < self.high <= 100.0:
            raise ConfigError(
                f"normalization.low/high are {self.low}/{self.high}; expected 0 <= low < high <= 100."
            )

    def __call__(self, channel: np.ndarray) -> np.ndarray:
        """One 2-D channel (any dtype) as float32 scaled to [0, 1] (a constant channel becomes zeros)."""
        data = channel.astype(np.float32, copy=False)
        if self.method == "percentile":
            lo, hi = np.percentile(data, (self.low, self.high))
        else:
            lo, hi = float(data.min()), float(data.max())
        span = float(hi - lo)
        if span <= 0.0:
            return np.zeros_like(data, dtype=np.float32)
        scaled = (data - np.float32(lo)) / np.float32(span)
        if self.clip:
            np.clip(scaled, 0.0, 1.0, out=scaled)
        return scaled
