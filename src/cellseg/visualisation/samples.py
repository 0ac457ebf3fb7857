"""A split's samples as the figures need them: drawn as training draws them, or whole as validation sees them.

Both are :class:`~cellseg.data.pipeline.dataset.SegmentationDataset` objects made from the data module's
own parts (decoded images, bound channels, target, normalisation, augmentation, crop size), so nothing is
re-implemented: what the figures show is what the model is fed.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch.utils.data import default_collate

from cellseg.data.pipeline.dataset import SegmentationDataset
from cellseg.data.sources.base import SegmentationDataModule
from cellseg.errors import ConfigError, DataError


def check_split(datamodule: SegmentationDataModule, split: str) -> None:
    """A split the data set provides, else a DataError naming those it has."""
    if not datamodule.has_split(split):
        present = [s for s in ("train", "val", "test") if datamodule.has_split(s)]
        raise DataError(
            f"{type(datamodule).__name__} has no '{split}' split; it has {', '.join(present)} (split=...)."
        )


def training_view(datamodule: SegmentationDataModule, split: str, seed: int) -> SegmentationDataset:
    """``split``'s images through the training pipeline: random channel draws and dropout, random crop,
    augmentation. Sample ``i`` in epoch ``e`` is drawn from (seed, e, i), as in a training run whose
    ``seed`` is ``seed`` (see SegmentationDataset), so its epochs can be replayed here one by one."""
    check_split(datamodule, split)
    base = datamodule.dataset(split)  # decoded once; dataset-wide normalisation fitted on train
    return SegmentationDataset(
        base.samples,
        base.channels,
        base.target,
        base.normalization,
        augment=datamodule.augmentation,
        crop_size=datamodule.crop_size,
        training=True,
        seed=seed,
    )


def training_sample(dataset: SegmentationDataset, index: int) -> dict[str, torch.Tensor]:
    """Sample ``index`` of a :func:`training_view` as the network gets it: with ``augmentation.device=gpu``
    its augmentation is applied here, as the training step applies it (a sample's draws do not depend on
    the batch it is in), on the GPU when there is one, whose elastic noise a GPU run draws."""
    item = dataset[index]
    if not dataset.augments_on_batch:
        return item
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    batch = {key: value.to(device) for key, value in default_collate([item]).items()}
    return {key: value[0].cpu() for key, value in dataset.augment(batch).items()}


def whole_view(datamodule: SegmentationDataModule, split: str) -> SegmentationDataset:
    """``split``'s images whole, without random draws or augmentation: as validation sees them."""
    check_split(datamodule, split)
    base = datamodule.dataset(split)
    if not base.training and base.augment is None and base.crop_size is None:
        return base
    return SegmentationDataset(base.samples, base.channels, base.target, base.normalization, seed=base.seed)


def pick_images(available: int, samples: int, indices: Sequence[int] | None, seed: int) -> list[int]:
    """Which images to show: ``indices`` as given (checked), else ``samples`` drawn without repeats from
    ``seed`` and sorted (all of them when there are fewer)."""
    if indices is not None:
        bad = [i for i in indices if not 0 <= i < available]
        if bad:
            raise ConfigError(
                f"indices={list(indices)}: the split has {available} image(s), numbered 0..{available - 1}."
            )
        return list(indices)
    rng = np.random.default_rng(seed)
    return sorted(int(i) for i in rng.choice(available, size=min(samples, available), replace=False))


def spec_label(spec: Any) -> str:
    """A short name of one model input channel spec (``membrane``, ``mean(a,b)``, ``random(a|b)``)."""
    if isinstance(spec, str | int):
        return str(spec)
    spec = dict(spec)
    if "merge" in spec:
        return f"mean({','.join(map(str, spec['merge']))})"
    if "random" in spec:
        return f"random({'|'.join(map(str, spec['random']))})"
    if "spec" in spec:
        return f"{spec_label(spec['spec'])} (dropout {spec['dropout']})"
    return "blank"


def input_names(specs: Sequence[Any]) -> list[str]:
    """Names of the model's input channels from the channel strategy's specs."""
    return [spec_label(spec) for spec in specs]
