"""Channel strategies: which planes of a multi-channel image become the model's input channels.

A strategy is a list of *specs*, one per model input channel, so the model's ``in_channels`` is always
``len(specs)``. Each spec turns the source image into one normalised 2-D plane:

- ``cytoplasm`` or ``3``: a channel by name or index;
- ``{random: [a, b, c], val: b}``: one channel of the set, drawn anew for every training sample;
- ``{merge: [a, b, c], dropout: 0.3}``: the mean of the per-channel-normalised planes; in training each
  input is left out with probability ``dropout`` and the sum is still divided by the number of inputs,
  so the merge gets darker as inputs drop (seed 001's semantics);
- ``blank``: all zeros, the baseline that shows what the model learns without any signal;
- ``{dropout: 0.5, spec: <spec>}``: in training, the wrapped spec is replaced by zeros with probability p.

Randomisation and dropout apply in training only. Validation uses a fixed choice: ``val`` of a random
spec (default: its first channel), every input of a merge, and never drops a channel. Seed 001 applied
them in validation too (a bug of its class-level settings); ``leak_to_validation=true`` reproduces it.

A :class:`ChannelStrategy` names channels; ``strategy.bind(channel_names)`` resolves them against one
source's images once and returns an immutable :class:`BoundChannels` (nothing is filled in later).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from cellseg.errors import ConfigError

ChannelRef = str | int
Normalize = Callable[[np.ndarray, int], np.ndarray]


class PlaneSource(Protocol):
    """Normalised planes of one image by channel index (computed once per index and sample)."""

    shape: tuple[int, int]

    def __call__(self, index: int) -> np.ndarray: ...


def resolve_channel(ref: ChannelRef, channel_names: Sequence[str]) -> int:
    """Index of a channel given by name or index, with an error that lists what the data has."""
    if isinstance(ref, bool) or not isinstance(ref, (str, int)):
        raise ConfigError(f"Channel spec {ref!r} is not a channel name or index.")
    if isinstance(ref, str) and ref.lstrip("-").isdigit():
        ref = int(ref)
    if isinstance(ref, int):
        if not -len(channel_names) <= ref < len(channel_names):
            raise ConfigError(
                f"Channel index {ref} is out of range: the images have {len(channel_names)} channels "
                f"({', '.join(channel_names)})."
            )
        return ref % len(channel_names)
    if ref not in channel_names:
        raise ConfigError(f"Unknown channel '{ref}'. The images have channels: {', '.join(channel_names)}.")
    return list(channel_names).index(ref)


def _probability(value: Any, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value <= 1.0:
        raise ConfigError(f"{what} must be a probability in [0, 1], got {value!r}.")
    return float(value)


class BoundSpec(ABC):
    """One model input channel, bound to the channel indices of a source's images."""

    @abstractmethod
    def plane(self, planes: PlaneSource, rng: np.random.Generator, training: bool) -> np.ndarray:
        """The channel's (H, W) plane; ``training`` switches on random draws and dropout."""

    @property
    def channels_used(self) -> frozenset[int]:
        """Source channel indices this channel may read."""
        return frozenset()

    @abstractmethod
    def prediction_weights(self) -> dict[int, float]:
        """The channel outside training as a weighted sum of normalised source planes {index: weight}."""


@dataclass(frozen=True)
class Pick(BoundSpec):
    index: int

    def plane(self, planes: PlaneSource, rng: np.random.Generator, training: bool) -> np.ndarray:
        return planes(self.index)

    def prediction_weights(self) -> dict[int, float]:
        return {self.index: 1.0}

    @property
    def channels_used(self) -> frozenset[int]:
        return frozenset({self.index})


@dataclass(frozen=True)
class PickRandom(BoundSpec):
    indices: tuple[int, ...]
    val_index: int

    def plane(self, planes: PlaneSource, rng: np.random.Generator, training: bool) -> np.ndarray:
        return planes(int(rng.choice(self.indices)) if training else self.val_index)

    def prediction_weights(self) -> dict[int, float]:
        return {self.val_index: 1.0}

    @property
    def channels_used(self) -> frozenset[int]:
        return frozenset({*self.indices, self.val_index})


@dataclass(frozen=True)
class MeanOf(BoundSpec):
    indices: tuple[int, ...]
    dropout: float

    def plane(self, planes: PlaneSource, rng: np.random.Generator, training: bool) -> np.ndarray:
        total = np.zeros(planes.shape, dtype=np.float32)
        for index in self.indices:
            if not training or self.dropout == 0.0 or rng.random() >= self.dropout:
                total += planes(index)
        return total / np.float32(len(self.indices))

    def prediction_weights(self) -> dict[int, float]:
        weights: dict[int, float] = {}
        for index in self.indices:  # a channel listed twice counts twice, as in plane()
            weights[index] = weights.get(index, 0.0) + 1.0 / len(self.indices)
        return weights

    @property
    def channels_used(self) -> frozenset[int]:
        return frozenset(self.indices)


@dataclass(frozen=True)
class Zeros(BoundSpec):
    def plane(self, planes: PlaneSource, rng: np.random.Generator, training: bool) -> np.ndarray:
        return np.zeros(planes.shape, dtype=np.float32)

    def prediction_weights(self) -> dict[int, float]:
        return {}


@dataclass(frozen=True)
class DropPlane(BoundSpec):
    inner: BoundSpec
    p: float

    def plane(self, planes: PlaneSource, rng: np.random.Generator, training: bool) -> np.ndarray:
        if training and self.p > 0.0 and rng.random() < self.p:
            return np.zeros(planes.shape, dtype=np.float32)
        return self.inner.plane(planes, rng, training)

    def prediction_weights(self) -> dict[int, float]:
        return self.inner.prediction_weights()

    @property
    def channels_used(self) -> frozenset[int]:
        return self.inner.channels_used


class Spec(ABC):
    """One model input channel as configured: channels named (or numbered) but not yet found."""

    @abstractmethod
    def bind(self, channel_names: Sequence[str]) -> BoundSpec:
        """The spec on images with these channels; ConfigError for channels they do not have."""


@dataclass(frozen=True)
class Select(Spec):
    ref: ChannelRef

    def bind(self, channel_names: Sequence[str]) -> BoundSpec:
        return Pick(resolve_channel(self.ref, channel_names))


@dataclass(frozen=True)
class Random(Spec):
    refs: tuple[ChannelRef, ...]
    val: ChannelRef | None = None

    def bind(self, channel_names: Sequence[str]) -> BoundSpec:
        indices = tuple(resolve_channel(r, channel_names) for r in self.refs)
        return PickRandom(
            indices, resolve_channel(self.refs[0] if self.val is None else self.val, channel_names)
        )


@dataclass(frozen=True)
class Merge(Spec):
    refs: tuple[ChannelRef, ...]
    dropout: float = 0.0

    def bind(self, channel_names: Sequence[str]) -> BoundSpec:
        return MeanOf(tuple(resolve_channel(r, channel_names) for r in self.refs), self.dropout)


@dataclass(frozen=True)
class Blank(Spec):
    def bind(self, channel_names: Sequence[str]) -> BoundSpec:
        return Zeros()


@dataclass(frozen=True)
class Dropout(Spec):
    inner: Spec
    p: float

    def bind(self, channel_names: Sequence[str]) -> BoundSpec:
        return DropPlane(self.inner.bind(channel_names), self.p)


_SPEC_KEYS = {"random": {"random", "val"}, "merge": {"merge", "dropout"}, "blank": {"blank"}}


def parse_spec(raw: Any) -> Spec:
    """A Spec from its config form (see the module docstring); errors name the spec and the valid forms."""
    if isinstance(raw, str) and raw == "blank":
        return Blank()
    if isinstance(raw, (str, int)) and not isinstance(raw, bool):
        return Select(raw)
    if not isinstance(raw, Mapping):
        raise ConfigError(
            f"Channel spec {raw!r} is not understood. Use a channel name or index, 'blank', "
            "{random: [...]}, {merge: [...], dropout: p} or {dropout: p, spec: ...}."
        )
    keys = set(raw)
    if keys == {"dropout", "spec"}:
        return Dropout(parse_spec(raw["spec"]), _probability(raw["dropout"], "Channel dropout"))
    for kind, allowed in _SPEC_KEYS.items():
        if kind in keys:
            if not keys <= allowed:
                raise ConfigError(
                    f"Channel spec {dict(raw)!r}: unexpected keys {sorted(keys - allowed)}; "
                    f"a '{kind}' spec takes {sorted(allowed)}."
                )
            break
    else:
        raise ConfigError(
            f"Channel spec {dict(raw)!r} has none of the keys random, merge, blank, or dropout+spec."
        )
    if kind == "blank":
        return Blank()
    refs = raw[kind]
    if isinstance(refs, (str, int)) or not refs:
        raise ConfigError(f"Channel spec '{kind}' needs a non-empty list of channels, got {refs!r}.")
    if kind == "random":
        return Random(tuple(refs), raw.get("val"))
    return Merge(tuple(refs), _probability(raw.get("dropout", 0.0), "Merge dropout"))


class ChannelStrategy:
    """The ordered channel specs that become the model input (the ``channels`` config group).

    It knows channels by name only; :meth:`bind` finds them in a source's images and returns the
    immutable :class:`BoundChannels` that turns those images into model input.
    """

    def __init__(
        self,
        specs: Sequence[Any] | None = None,
        codes: Sequence[int] | None = None,
        dropout: float = 0.0,
        merge_dropout: float = 0.0,
        leak_to_validation: bool = False,
    ) -> None:
        if (specs is None) == (codes is None):
            raise ConfigError(
                "Give exactly one of channels.specs (a list of specs) or channels.codes (seed 001)."
            )
        if codes is not None:
            from cellseg.data.pipeline.seed_codes import specs_from_codes

            specs = specs_from_codes(codes, dropout=dropout, merge_dropout=merge_dropout)
        if isinstance(specs, (str, bytes)) or not specs:
            raise ConfigError(f"channels.specs must be a non-empty list of channel specs, got {specs!r}.")
        self.raw_specs = list(specs)
        self.specs = tuple(parse_spec(s) for s in self.raw_specs)
        self.leak_to_validation = bool(leak_to_validation)

    @property
    def num_channels(self) -> int:
        """The model's ``in_channels``."""
        return len(self.specs)

    def bind(self, channel_names: Sequence[str]) -> BoundChannels:
        """The strategy on images with these channels; ConfigError naming any channel they lack."""
        names = tuple(channel_names)
        return BoundChannels(names, tuple(spec.bind(names) for spec in self.specs), self.leak_to_validation)

    def describe(self) -> list[Any]:
        """The specs as plain config values (what a checkpoint stores)."""
        return self.raw_specs


@dataclass(frozen=True)
class BoundChannels:
    """A channel strategy bound to the channel names of one source's images: source image -> model input.

    ``leak_to_validation`` applies random draws and dropout outside training too (seed 001's bug).
    """

    channel_names: tuple[str, ...]
    specs: tuple[BoundSpec, ...]
    leak_to_validation: bool = False

    @property
    def num_channels(self) -> int:
        return len(self.specs)

    @property
    def channels_used(self) -> frozenset[int]:
        """Indices of the source channels that any model input channel may read."""
        return frozenset().union(*(spec.channels_used for spec in self.specs))

    def prediction_mixing(self) -> tuple[tuple[int, ...], np.ndarray]:
        """The model input outside training as a fixed linear map of the normalised source planes:
        (the source indices read, in order; weights (model channels, len(indices)) float32).

        What an exporter needs where preprocessing can only normalise planes (the BioImage Model Zoo
        format has no select or merge): the map runs inside the exported network instead.
        """
        if self.leak_to_validation:
            raise ConfigError(
                "channels.leak_to_validation=true draws input channels at random at prediction too, "
                "which no fixed model input can reproduce."
            )
        weights = [spec.prediction_weights() for spec in self.specs]
        used = tuple(sorted({index for channel in weights for index in channel}))
        matrix = np.zeros((len(self.specs), len(used)), dtype=np.float32)
        for row, channel in enumerate(weights):
            for index, weight in channel.items():
                matrix[row, used.index(index)] = weight
        return used, matrix

    def apply(
        self,
        image: np.ndarray,
        normalize: Normalize,
        rng: np.random.Generator | None = None,
        training: bool = False,
    ) -> np.ndarray:
        """The model input (len(specs), H, W) float32 from a source image (C, H, W) of any dtype."""
        if image.ndim != 3 or image.shape[0] != len(self.channel_names):
            raise ConfigError(
                f"Expected an image of shape ({len(self.channel_names)}, H, W) with channels "
                f"{', '.join(self.channel_names)}; got shape {image.shape}."
            )
        planes = _NormalizedPlanes(image, normalize)
        rng = rng if rng is not None else np.random.default_rng(0)
        randomise = training or self.leak_to_validation
        return np.stack([spec.plane(planes, rng, randomise) for spec in self.specs]).astype(
            np.float32, copy=False
        )


class _NormalizedPlanes:
    """Normalises each source channel at most once per sample, only when a spec asks for it."""

    def __init__(self, image: np.ndarray, normalize: Normalize) -> None:
        self.image = image
        self.normalize = normalize
        self.shape = (int(image.shape[1]), int(image.shape[2]))
        self._cache: dict[int, np.ndarray] = {}

    def __call__(self, index: int) -> np.ndarray:
        if index not in self._cache:
            self._cache[index] = self.normalize(self.image[index], index).astype(np.float32, copy=False)
        return self._cache[index]
