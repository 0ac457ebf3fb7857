"""The per-sample pipeline shared by every data set: channels -> target -> crop -> augmentation.

With ``augmentation.device=gpu`` the augmentation is a
:class:`~cellseg.data.pipeline.batch_augment.BatchAugmentation`: samples stop after the crop and carry
the seed of their augmentation, which the LightningModule applies to the batch on its device.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from torch.utils.data import Dataset

from cellseg.data.pipeline.channels import BoundChannels
from cellseg.data.pipeline.normalize import Normalization
from cellseg.data.pipeline.targets import Target
from cellseg.errors import ConfigError

#: The key of a sample's augmentation seed, for an augmentation applied to the batch later.
AUGMENT_SEED = "augment_seed"


@dataclass
class SampleSet:
    """Decoded images of one split, kept in memory in their native dtype.

    ``images``: (C, H, W) arrays; ``instances``: (H, W) int32 instance ids (0 = background, -1 =
    unannotated), or None for stacks without masks whose target is derived from the image.
    """

    images: Sequence[np.ndarray]
    instances: Sequence[np.ndarray] | None = None
    names: Sequence[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.instances is not None and len(self.images) != len(self.instances):
            raise ConfigError(f"{len(self.images)} images but {len(self.instances)} label maps.")
        if not self.names:
            self.names = [f"image_{i:04d}" for i in range(len(self.images))]

    def __len__(self) -> int:
        return len(self.images)


def random_crop(arrays: Sequence[np.ndarray], size: int, rng: np.random.Generator) -> list[np.ndarray]:
    """The same random ``size`` x ``size`` window of each (..., H, W) array; small ones are mirror-padded."""
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

    Targets are deterministic, so each image's instances and classes are computed once and kept.
    Randomness (channel draws and dropout, crops, augmentation) of a sample is drawn from a generator
    keyed by (seed, epoch, sample index): the same whatever the loader workers, the DDP rank or the
    order, so a run resumed at epoch k draws exactly what the uninterrupted run drew. ``seed`` defaults
    to ``torch.initial_seed()`` (the run's seed after ``seed_everything``); the epoch is set by
    :meth:`set_epoch` and shared with worker processes; albumentations is re-seeded from the same
    generator because it otherwise seeds from the OS. A batch augmentation (``augmentation.device=gpu``)
    takes its seed from the same draw, so such samples are cropped exactly as on the CPU path.
    """

    def __init__(
        self,
        samples: SampleSet,
        channels: BoundChannels,
        target: Target,
        normalization: Normalization,
        augment: Callable[..., dict] | None = None,
        crop_size: int | None = None,
        training: bool = False,
        crops_per_image: int = 1,
        weight_map: Callable[[np.ndarray], np.ndarray] | None = None,
        seed: int | None = None,
    ) -> None:
        if crops_per_image < 1:
            raise ConfigError(f"data.crops_per_image must be >= 1, got {crops_per_image}.")
        self.samples = samples
        self.channel_names = channels.channel_names
        self.channels = channels
        self.target = target
        self.normalization = normalization
        self.augment = augment
        # A batch augmentation (augmentation.device=gpu) says so; its module is not imported here: it
        # would load albumentations (0.6 s) into every user of the data set, evaluate included.
        self.augments_on_batch = bool(getattr(augment, "on_batch", False))
        self.crop_size = crop_size
        self.training = training
        # Few large images (a microscope field, an EM slice): several random crops of each per epoch.
        self.repeats = crops_per_image if crop_size is not None else 1
        self.seed = torch.initial_seed() if seed is None else int(seed)
        self.epoch = torch.zeros((), dtype=torch.int64).share_memory_()  # seen by persistent workers too
        self.instances = self._instances(samples, channels.channels_used)
        self.weight_map = weight_map
        self._classes: dict[int, np.ndarray] = {}
        self._weights: dict[int, np.ndarray] = {}
        self._regression: dict[int, np.ndarray] = {}

    def _instances(self, samples: SampleSet, used: frozenset[int]) -> list[np.ndarray]:
        if not self.target.needs_image:
            if samples.instances is None:
                raise ConfigError(
                    "These images come without masks: choose target=from_channel to derive the labels "
                    "from one of their channels."
                )
            return list(samples.instances)
        target_channel = self.target.channel_index(self.channel_names)  # type: ignore[attr-defined]
        if target_channel in used:
            warnings.warn(
                f"The target is made from channel '{self.channel_names[target_channel]}', which is also a "
                "model input: the task becomes trivial.",
                stacklevel=2,
            )
        return [self.target.instances_from_image(image, self.channel_names) for image in samples.images]  # type: ignore[attr-defined]

    def __len__(self) -> int:
        return len(self.samples) * self.repeats

    def classes(self, index: int) -> np.ndarray:
        """Class ids (H, W) of an image, computed once (stored compactly as int16)."""
        if index not in self._classes:
            self._classes[index] = self.target(self.instances[index]).astype(np.int16)
        return self._classes[index]

    def weights(self, index: int) -> np.ndarray:
        """Per-pixel loss weights (H, W) of an image (e.g. the U-Net border map), computed once."""
        assert self.weight_map is not None
        if index not in self._weights:
            self._weights[index] = self.weight_map(np.maximum(self.instances[index], 0)).astype(np.float32)
        return self._weights[index]

    def regression(self, index: int) -> np.ndarray:
        """Regression maps (R, H, W) of the target (distance, flows) of a whole, untransformed image,
        computed once (samples without crop or augmentation: validation)."""
        if index not in self._regression:
            self._regression[index] = self.target.regression(self.instances[index])
        return self._regression[index]

    def set_epoch(self, epoch: int) -> None:
        """The epoch whose random draws the next samples take."""
        self.epoch.fill_(int(epoch))

    def _generator(self, index: int) -> tuple[np.random.Generator, int | None]:
        """Sample ``index``'s generator in the current epoch and its augmentation's seed, drawn from it
        first (None without a seeded augmentation): albumentations is seeded with it here, a batch
        augmentation gets it with the sample."""
        rng = np.random.default_rng([self.seed % 2**63, int(self.epoch), index])
        if self.augment is None or not (self.augments_on_batch or hasattr(self.augment, "set_random_seed")):
            return rng, None
        seed = int(rng.integers(2**32))
        if not self.augments_on_batch:
            self.augment.set_random_seed(seed)
        return rng, seed

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        rng, augment_seed = self._generator(index)
        index %= len(self.samples)
        image = self.channels.apply(
            self.samples.images[index], self.normalization, rng, training=self.training
        )
        labels = [self.classes(index), self.instances[index]]
        if self.weight_map is not None:
            labels.append(self.weights(index))
        if self.crop_size is not None:
            image, *labels = random_crop([image, *labels], self.crop_size, rng)
        if self.augment is not None and not self.augments_on_batch:
            out = self.augment(
                image=np.ascontiguousarray(image.transpose(1, 2, 0)),
                masks=[label.astype(np.float32) for label in labels],
            )
            image, labels = out["image"].transpose(2, 0, 1), out["masks"]
        item = {
            "image": torch.from_numpy(np.ascontiguousarray(image, dtype=np.float32)),
            "mask": torch.from_numpy(np.ascontiguousarray(np.rint(labels[0]), dtype=np.int64)),
            "instances": torch.from_numpy(np.ascontiguousarray(np.rint(labels[1]), dtype=np.int64)),
            "index": torch.tensor(index),
        }
        if self.augments_on_batch:
            item[AUGMENT_SEED] = torch.tensor(augment_seed)
        if self.weight_map is not None:
            item["weight_map"] = torch.from_numpy(np.ascontiguousarray(labels[2], dtype=np.float32))
        if self.target.regression_names:
            # From the instances as the sample finally is (cropped, augmented), so the maps are right
            # under any geometric transform: a rotated image gets rotated flow vectors, a cut cell the
            # distances of its visible part. A batch augmentation moves them itself (see batch_augment).
            transformed = self.crop_size is not None or (
                self.augment is not None and not self.augments_on_batch
            )
            maps = (
                self.target.regression(item["instances"].numpy()) if transformed else self.regression(index)
            )
            item["regression"] = torch.from_numpy(np.ascontiguousarray(maps, dtype=np.float32))
        return item
