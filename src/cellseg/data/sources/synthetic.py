"""``data=synthetic``: fluorescence-like cell images generated from a seed; nothing to download."""

from __future__ import annotations

from typing import Any

import numpy as np

from cellseg.data.pipeline.dataset import SampleSet
from cellseg.data.sources.base import SegmentationDataModule
from cellseg.data.sources.synthetic_cells import CHANNEL_NAMES, SyntheticCellsParams, generate_cells
from cellseg.errors import ConfigError


class SyntheticDataModule(SegmentationDataModule):
    """Fluorescence-like cell images generated from a seed (``data=synthetic``); nothing to download."""

    def __init__(
        self,
        num_train: int = 48,
        num_val: int = 16,
        num_test: int = 16,
        size: int = 256,
        seed: int = 0,
        **kwargs: Any,
    ) -> None:
        self.counts = {"train": num_train, "val": num_val, "test": num_test}
        for split, count in self.counts.items():
            if count < (0 if split == "test" else 1):
                raise ConfigError(f"data.num_{split} must be >= {0 if split == 'test' else 1}, got {count}.")
        self.params = SyntheticCellsParams(size=size)
        self.seed = seed
        super().__init__(**kwargs)
        _ = self.bound_channels  # a bad channel name fails here, before any work

    @property
    def channel_names(self) -> tuple[str, ...]:
        return tuple(CHANNEL_NAMES)

    def has_split(self, split: str) -> bool:
        return self.counts.get(split, 0) > 0

    def load_split(self, split: str) -> SampleSet:
        images, instances = generate_cells(self.counts[split], self.seed, split, self.params)
        names = [f"synthetic_{split}_{i:04d}" for i in range(len(images))]
        return SampleSet(list(images), [np.asarray(m) for m in instances], names)
