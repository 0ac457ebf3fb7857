"""The per-sample pipeline shared by every data set: channels -> target -> crop -> augmentation."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from torch.utils.data import Dataset

from cellseg.data.channels import ChannelStrategy
from cellseg.data.normalize import Normalization
from cellseg.errors import ConfigError


@dataclass
class SampleSet:
    """Decoded images of one split, kept in their native dtype: images (C, H, W), instances (H, W)."""

    images: Sequence[np.ndarray]
    instances: Sequence[np.ndarray]
    names: Sequence[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        if len(self.images) != len(self.instances):
            raise ConfigError(f"{len(self.images)} images but {len(self.instances)} label maps.")
        if not self.names:
            self.names = [f"image_{i:04d}" for i in range(len(self.images))]

    def __len__(self) -> int:
        return len(self.images)


def random_crop(arrays: Sequence[np.ndarray], size: int, rng: np.random.Generator) -> list[np.ndarray]:
    """The same random ``size`` x ``size`` window of each array (..., H, W); smaller images are mirror-padded."""
    height, width = arrays[0].shape[-2:]
    pad_h, pad_w = max(size - height, 0), max(size - width, 0)
    if pad_h or pad_w:
        widths = ((pad_h // 2, pad_h - pad_h // 2), (pad_w // 2, pad_w - pad_w // 2))
        arrays = [np.pad(a, ((0, 0),) * (a.ndim - 2) + widths, mode="reflect") for a in arrays]
        height, width = arrays[0].shape[-2:]
    top = int(rng.integers(0, height - size + 1))
    left = int(rng.integers(0, width - size + 1))
    return [a[..., top : top + size, left : left + size] for a in arrays]


class SegmentationDataset(Dataset):
    """Turns decoded images and instance maps into model-ready tensors.

    Randomness (crops, augmentation) is drawn from a generator seeded by ``torch.initial_seed()``,
    which Lightning's ``seed_everything(workers=True)`` makes distinct per worker and reproducible per
    run; albumentations is re-seeded from the same value because it otherwise seeds from the OS.
    """

    def __init__(
        self,
        samples: SampleSet,
        channel_names: Sequence[str],
        channels: ChannelStrategy,
        target: Callable[[np.ndarray], np.ndarray],
        normalization: Normalization,
        augment: Callable[..., dict] | None = None,
        crop_size: int | None = None,
    ) -> None:
        channels.bind(channel_names)
        self.samples = samples
        self.channel_names = tuple(channel_names)
        self.channels = channels
        self.target = target
        self.normalization = normalization
        self.augment = augment
        self.crop_size = crop_size
        self._rng: np.random.Generator | None = None
        self._rng_seed: int | None = None

    def __len__(self) -> int:
        return len(self.samples)

    def _generator(self) -> np.random.Generator:
        seed = torch.initial_seed()
        if self._rng is None or self._rng_seed != seed:
            self._rng, self._rng_seed = np.random.default_rng(seed), seed
            if self.augment is not None and hasattr(self.augment, "set_random_seed"):
                self.augment.set_random_seed(seed % 2**32)
        return self._rng

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        image = self.channels.apply(self.samples.images[index], self.channel_names, self.normalization)
        mask = self.target(self.samples.instances[index])
        if self.crop_size is not None:
            image, mask = random_crop([image, mask], self.crop_size, self._generator())
        if self.augment is not None:
            self._generator()
            out = self.augment(
                image=np.ascontiguousarray(image.transpose(1, 2, 0)), mask=mask.astype(np.float32)
            )
            image = out["image"].transpose(2, 0, 1)
            mask = np.rint(out["mask"]).astype(np.int64)
        return {
            "image": torch.from_numpy(np.ascontiguousarray(image, dtype=np.float32)),
            "mask": torch.from_numpy(np.ascontiguousarray(mask, dtype=np.int64)),
            "index": torch.tensor(index),
        }
