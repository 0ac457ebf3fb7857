"""LightningDataModules: one shared pipeline, one subclass per data source."""

from __future__ import annotations

import logging
import os
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Mapping, Sequence
from functools import cached_property
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, DistributedSampler, RandomSampler

from cellseg.data.pipeline.channels import BoundChannels, ChannelStrategy
from cellseg.data.pipeline.dataset import SampleSet, SegmentationDataset
from cellseg.data.pipeline.normalize import Normalization
from cellseg.data.pipeline.scale import check_scale, rescale_samples
from cellseg.data.pipeline.targets import Target
from cellseg.errors import ConfigError, DataError
from cellseg.utils.seeds import epoch_seed

SPLITS = ("train", "val", "test")
log = logging.getLogger(__name__)


def usable_cores() -> int:
    """CPU cores this process may run on (its affinity: a SLURM or taskset share, not the machine's)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS and Windows have no affinity call
        return os.cpu_count() or 1


def resolve_num_workers(value: int | str, processes: int = 1) -> int:
    """``data.num_workers``: a count, or ``auto``: the cores usable per training process (one per GPU
    under DDP), less the one the process itself trains on."""
    if value == "auto":
        return max(0, usable_cores() // max(1, processes) - 1)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ConfigError(f"data.num_workers is {value!r}; expected a count >= 0 or auto.")
    return value


class UnpaddedDistributedSampler(DistributedSampler):
    """Each rank evaluates a disjoint share of the data and no sample twice.

    Lightning's default DistributedSampler pads the last batch with repeated samples so ranks stay in
    step, which biases validation metrics; metrics here are summed across ranks, so uneven shares are fine.
    """

    def __iter__(self) -> Iterator[int]:
        return iter(range(self.rank, len(self.dataset), self.num_replicas))

    def __len__(self) -> int:
        return len(range(self.rank, len(self.dataset), self.num_replicas))


class SegmentationDataModule(pl.LightningDataModule, ABC):
    """Shared loading logic: subclasses say which channels exist and how to decode a split.

    Each split is decoded once, at set-up (before training), and kept in memory in its native dtype;
    every bad file is reported then. Training draws random crops of ``crop_size``; validation and test
    use whole images. ``scale`` resizes every split's images and labels as they are decoded
    (:mod:`cellseg.data.pipeline.scale`: bring large cells to about 30 px).
    """

    def __init__(
        self,
        channels: ChannelStrategy,
        target: Target,
        augmentation: Callable[..., dict] | None = None,
        normalization: Mapping[str, Any] | Normalization | None = None,
        batch_size: int = 8,
        val_batch_size: int | None = None,
        num_workers: int | str = 0,
        pin_memory: bool = True,
        persistent_workers: bool = True,
        prefetch_factor: int = 2,
        crop_size: int | None = None,
        crops_per_image: int = 1,
        skip_bad: bool = False,
        eval_metrics: Sequence[str] = ("instances",),
        weight_map: Callable[[np.ndarray], np.ndarray] | None = None,
        scale: float = 1.0,
    ) -> None:
        super().__init__()
        if batch_size < 1:
            raise ConfigError(f"data.batch_size must be >= 1, got {batch_size}.")
        resolve_num_workers(num_workers)  # checked now; auto is resolved per process when loaders start
        if isinstance(prefetch_factor, bool) or not isinstance(prefetch_factor, int) or prefetch_factor < 1:
            raise ConfigError(f"data.prefetch_factor is {prefetch_factor!r}; expected a count >= 1.")
        if crop_size is not None and crop_size < 8:
            raise ConfigError(
                f"data.crop_size must be >= 8 pixels (or null for whole images), got {crop_size}."
            )
        self.channels = channels
        self.target = target
        self.augmentation = augmentation
        if isinstance(normalization, Normalization):
            self.normalization = normalization
        else:
            self.normalization = Normalization(**dict(normalization or {}))
        self.batch_size = batch_size
        self.val_batch_size = val_batch_size or batch_size
        self.num_workers = num_workers
        self.pin_memory = pin_memory
        self.persistent_workers = persistent_workers
        self.prefetch_factor = prefetch_factor
        self.crop_size = crop_size
        self.crops_per_image = crops_per_image
        self.skip_bad = skip_bad
        self.eval_metrics = tuple(eval_metrics)
        self.weight_map = weight_map
        self.scale = check_scale(scale)
        self._datasets: dict[str, SegmentationDataset] = {}
        self._seed = torch.initial_seed()  # the run's seed: the data module is built after seed_everything
        self._order = torch.Generator()  # the training order; reseeded per epoch by set_epoch
        self._worker_seeds = torch.Generator()  # loader workers' base seeds (unused by the datasets)
        self._epoch: int | None = None

    @property
    @abstractmethod
    def channel_names(self) -> tuple[str, ...]:
        """Names of the channels of the source images, in order."""

    @abstractmethod
    def load_split(self, split: str) -> SampleSet:
        """Decode one split ('train', 'val' or 'test')."""

    @cached_property
    def bound_channels(self) -> BoundChannels:
        """The channel strategy bound to this source's channel names, once; sources that know their
        channels at construction touch it there, so a bad channel name fails before any work."""
        return self.channels.bind(self.channel_names)

    def has_split(self, split: str) -> bool:
        """Whether the source provides labelled images for ``split``."""
        return split in ("train", "val")

    @property
    def in_channels(self) -> int:
        return self.channels.num_channels

    @property
    def num_classes(self) -> int:
        return self.target.num_classes

    @property
    def class_names(self) -> tuple[str, ...]:
        return self.target.class_names

    def dataset(self, split: str) -> SegmentationDataset:
        """The dataset of a split, decoded once and kept in memory."""
        if split not in SPLITS:
            raise ConfigError(f"Unknown split '{split}'; expected one of {', '.join(SPLITS)}.")
        if split not in self._datasets:
            channels = self.bound_channels  # a channel the images lack fails before they are read
            if self.normalization.needs_fit and split != "train":
                self.dataset("train")  # dataset-wide statistics come from the training images
            samples = rescale_samples(self.load_split(split), self.scale)
            if len(samples) == 0:
                raise DataError(f"The '{split}' split of {type(self).__name__} is empty.")
            if split == "train" and self.normalization.needs_fit:
                self.normalization.fit(samples.images)
            training = split == "train"
            self._datasets[split] = SegmentationDataset(
                samples,
                channels,
                self.target,
                self.normalization,
                augment=self.augmentation if training else None,
                crop_size=self.crop_size if training else None,
                training=training,
                crops_per_image=self.crops_per_image,
                weight_map=self.weight_map,
                seed=self._seed,
            )
            self._datasets[split].set_epoch(self._epoch or 0)
        return self._datasets[split]

    def setup(self, stage: str | None = None) -> None:
        wanted = {"fit": ("train", "val"), "validate": ("val",), "test": ("test",), "predict": ()}
        for split in wanted.get(stage or "fit", ("train", "val")):
            self.dataset(split)

    def set_epoch(self, epoch: int) -> None:
        """Make the coming epoch's sample order and random draws those of epoch ``epoch`` of this seed,
        whether the run got there without a break or was resumed (see SegmentationDataset).

        Setting the epoch it is at already changes nothing: a resumed run sets it before its loader
        starts and again at the epoch's start, and the order must not be drawn afresh in between."""
        if epoch == self._epoch:
            return
        self._epoch = epoch
        for dataset in self._datasets.values():
            dataset.set_epoch(epoch)
        self._order.manual_seed(epoch_seed(self._seed, epoch))
        self._worker_seeds.manual_seed(epoch_seed(self._seed + 1, epoch))

    def _loader(self, split: str, batch_size: int, shuffle: bool) -> DataLoader:
        dataset = self.dataset(split)
        if self._epoch is None:
            self.set_epoch(0)
        trainer = self.trainer
        if shuffle:  # Lightning swaps in a DistributedSampler (seeded, set per epoch) under DDP
            sampler = RandomSampler(dataset, generator=self._order)
        elif trainer is not None and trainer.world_size > 1:
            sampler = UnpaddedDistributedSampler(
                dataset, num_replicas=trainer.world_size, rank=trainer.global_rank, shuffle=False
            )
        else:
            sampler = None
        workers = self.workers_per_process
        return DataLoader(
            dataset,
            batch_size=batch_size,
            sampler=sampler,
            drop_last=shuffle and len(dataset) > batch_size,
            num_workers=workers,
            pin_memory=self.pin_memory and torch.cuda.is_available(),
            persistent_workers=self.persistent_workers and workers > 0,
            prefetch_factor=self.prefetch_factor if workers > 0 else None,
            # The workers' base seed (drawn whenever a loader starts) comes from a generator of its
            # own, so starting a loader never moves the global stream that dropout draws from.
            generator=self._worker_seeds,
        )

    @cached_property
    def workers_per_process(self) -> int:
        """Loader workers of this process: ``num_workers``, with ``auto`` shared among the trainer's
        processes on this machine."""
        trainer = self.trainer
        processes = trainer.num_devices if trainer is not None and trainer.world_size > 1 else 1
        workers = resolve_num_workers(self.num_workers, processes)
        if self.num_workers == "auto":
            log.info(
                "data.num_workers=auto: %d loader worker(s) per process (%d usable cores)",
                workers,
                usable_cores(),
            )
        return workers

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", self.batch_size, shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val", self.val_batch_size, shuffle=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", self.val_batch_size, shuffle=False)

    def describe(self) -> dict[str, Any]:
        """What a checkpoint must remember to feed new images the same way (plain Python values)."""
        return {
            "source": type(self).__name__,
            "channel_names": list(self.channel_names),
            "channels": self.channels.describe(),
            "normalization": self.normalization.describe(),
            "target": self.target.describe(),
            "class_names": list(self.class_names),
            "crop_size": self.crop_size,
            "scale": self.scale,
        }
