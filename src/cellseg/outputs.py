"""What the network outputs for a target: K class logits first, then R regression maps.

Classes are not the only kind of output: ``target=distance`` adds a distance-to-border map and
``target=flows`` the two components of a flow field. The target says which (its ``outputs``), and
everything that touches the network's output (the model's output channels, the losses, the metrics,
prediction, evaluation and export) reads the layout from here, so a new output kind is added in one place.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch


@dataclass(frozen=True)
class OutputLayout:
    """The channels of the network's output: ``class_names`` (softmax over them) then ``regression_names``
    (linear, no activation)."""

    class_names: tuple[str, ...]
    regression_names: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "class_names", tuple(self.class_names))
        object.__setattr__(self, "regression_names", tuple(self.regression_names))

    @classmethod
    def of(cls, class_names: Sequence[str], regression_names: Sequence[str] | None = ()) -> OutputLayout:
        return cls(tuple(class_names), tuple(regression_names or ()))

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def num_channels(self) -> int:
        """The network's output channels."""
        return len(self.class_names) + len(self.regression_names)

    @property
    def has_regression(self) -> bool:
        return bool(self.regression_names)

    def split(self, raw: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Class logits (B, K, H, W) and regression maps (B, R, H, W) or None, of raw output (B, K+R, H, W)."""
        if raw.shape[1] != self.num_channels:
            raise ValueError(
                f"Network output has {raw.shape[1]} channels; the target's layout "
                f"({', '.join(self.channel_names)}) needs {self.num_channels}."
            )
        if not self.regression_names:
            return raw, None
        return raw[:, : self.num_classes], raw[:, self.num_classes :]

    def activate(self, raw: torch.Tensor) -> torch.Tensor:
        """Class probabilities (softmax over the class channels) followed by the regression maps, float32."""
        logits, regression = self.split(raw.float())
        probabilities = logits.softmax(dim=1)
        return probabilities if regression is None else torch.cat([probabilities, regression], dim=1)

    def split_array(self, outputs: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """:meth:`split` of one activated image (K+R, H, W) as numpy arrays."""
        if outputs.shape[0] != self.num_channels:
            raise ValueError(f"Expected {self.num_channels} output planes, got {outputs.shape[0]}.")
        if not self.regression_names:
            return outputs, None
        return outputs[: self.num_classes], outputs[self.num_classes :]

    @property
    def vector_pairs(self) -> list[tuple[int, int]]:
        """(y, x) channel indices of vector outputs (the flows), which flips and transposes turn."""
        names = self.channel_names
        if "flow_y" in names and "flow_x" in names:
            return [(names.index("flow_y"), names.index("flow_x"))]
        return []

    @property
    def channel_names(self) -> tuple[str, ...]:
        return self.class_names + self.regression_names

    def describe(self) -> dict[str, Any]:
        return {"class_names": list(self.class_names), "regression_names": list(self.regression_names)}


def layout_of_hparams(hparams: Mapping[str, Any]) -> OutputLayout:
    """The layout a checkpoint's hyperparameters record (checkpoints before regression outputs have none)."""
    return OutputLayout.of(hparams["class_names"], hparams.get("regression_names") or ())
