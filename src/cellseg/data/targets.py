"""Labeling strategies: how instance labels become the per-pixel classes the model is trained on."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from cellseg.errors import ConfigError


@dataclass(frozen=True)
class BinaryTarget:
    """Background (0) versus cell (1): every pixel of any instance is a cell pixel."""

    class_names: tuple[str, ...] = ("background", "cell")
    ignore_index: int = -100

    def __init__(
        self, class_names: tuple[str, ...] | list[str] = ("background", "cell"), ignore_index: int = -100
    ):
        if len(class_names) != 2:
            raise ConfigError(
                f"target.class_names of a binary target needs 2 names, got {list(class_names)}."
            )
        object.__setattr__(self, "class_names", tuple(class_names))
        object.__setattr__(self, "ignore_index", int(ignore_index))

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def __call__(self, instances: np.ndarray) -> np.ndarray:
        """Class map (H, W) int64 from instance ids (H, W), 0 = background."""
        return (instances > 0).astype(np.int64)
