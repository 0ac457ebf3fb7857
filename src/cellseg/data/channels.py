"""Which input channels the model sees, chosen by name or index from a multi-channel image.

A channel strategy is a list of specs, one per model input channel, so the model's ``in_channels``
is always ``len(specs)``. A spec is a channel name (``cytoplasm``) or an index (``0``); each spec
produces one normalised 2-D plane from the source image.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from cellseg.errors import ConfigError

ChannelRef = str | int


def _resolve(ref: ChannelRef, channel_names: Sequence[str]) -> int:
    """Index of a channel given by name or index, with an error that lists what the data has."""
    if isinstance(ref, bool):
        raise ConfigError(f"Channel spec {ref!r} is a boolean; expected a channel name or index.")
    if isinstance(ref, int):
        if not -len(channel_names) <= ref < len(channel_names):
            raise ConfigError(
                f"Channel index {ref} is out of range: the images have {len(channel_names)} channels "
                f"({', '.join(channel_names)})."
            )
        return ref % len(channel_names)
    if isinstance(ref, str) and ref.lstrip("-").isdigit():
        return _resolve(int(ref), channel_names)
    if ref not in channel_names:
        raise ConfigError(f"Unknown channel '{ref}'. The images have channels: {', '.join(channel_names)}.")
    return list(channel_names).index(ref)


@dataclass(frozen=True)
class ChannelStrategy:
    """The ordered channel specs that become the model input (``channels.specs`` in the config)."""

    specs: tuple[ChannelRef, ...]

    def __init__(self, specs: Sequence[ChannelRef]) -> None:
        if isinstance(specs, str) or not specs:
            raise ConfigError(
                f"channels.specs must be a non-empty list of channel names or indices, got {specs!r}."
            )
        object.__setattr__(self, "specs", tuple(specs))

    @property
    def num_channels(self) -> int:
        """The model's ``in_channels``."""
        return len(self.specs)

    def bind(self, channel_names: Sequence[str]) -> list[int]:
        """Check every spec against the data set's channels, before any training starts."""
        return [_resolve(spec, channel_names) for spec in self.specs]

    def apply(
        self,
        image: np.ndarray,
        channel_names: Sequence[str],
        normalize: Callable[[np.ndarray], np.ndarray],
    ) -> np.ndarray:
        """The model input (len(specs), H, W) float32 from a source image (C, H, W) of any dtype."""
        if image.ndim != 3 or image.shape[0] != len(channel_names):
            raise ConfigError(
                f"Expected an image of shape ({len(channel_names)}, H, W) with channels "
                f"{', '.join(channel_names)}; got shape {image.shape}."
            )
        planes = [normalize(image[index]) for index in self.bind(channel_names)]
        return np.stack(planes).astype(np.float32, copy=False)
