"""Loading a split's files with every problem reported at set-up, before training starts."""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterable
from typing import TypeVar

import numpy as np

from cellseg.data.pipeline.dataset import SampleSet
from cellseg.errors import DataError

Item = TypeVar("Item")
_SHOWN = 10


def load_samples(
    items: Iterable[Item],
    load: Callable[[Item], tuple[str, np.ndarray, np.ndarray | None]],
    skip_bad: bool = False,
    what: str = "data",
) -> SampleSet:
    """Load every item as (name, image (C, H, W), instances (H, W) or None).

    Every failing item is collected; then either one DataError lists them all with their fixes, or,
    with ``skip_bad``, one warning lists the skipped files and the rest is kept.
    """
    names: list[str] = []
    images: list[np.ndarray] = []
    instances: list[np.ndarray | None] = []
    problems: list[str] = []
    for item in items:
        try:
            name, image, labels = load(item)
        except DataError as error:
            problems.append(str(error))
            continue
        names.append(name)
        images.append(image)
        instances.append(labels)
    if problems:
        listing = "\n  ".join(problems[:_SHOWN]) + (
            f"\n  ... and {len(problems) - _SHOWN} more" if len(problems) > _SHOWN else ""
        )
        if not skip_bad:
            raise DataError(
                f"{len(problems)} problem(s) in {what} (fix them, or set data.skip_bad=true to skip those "
                f"files):\n  {listing}"
            )
        warnings.warn(
            f"Skipping {len(problems)} bad file(s) in {what} (data.skip_bad=true):\n  {listing}", stacklevel=2
        )
    has_labels = [labels is not None for labels in instances]
    if any(has_labels) and not all(has_labels):
        raise DataError(f"{what}: some images have masks and some do not.")
    return SampleSet(images, instances if all(has_labels) and instances else None, names)


def check_same_size(name: str, image: np.ndarray, mask: np.ndarray | None, mask_name: str) -> None:
    """Image and mask must cover the same pixels."""
    if mask is not None and image.shape[-2:] != mask.shape[-2:]:
        raise DataError(
            f"{name}: image is {image.shape[-2]}x{image.shape[-1]} but its mask {mask_name} is "
            f"{mask.shape[-2]}x{mask.shape[-1]}; they must have the same size."
        )
