"""Loss functions. Each takes the logits (B, K, H, W) and the batch, and reads what it needs from it."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from cellseg.errors import ConfigError


class CrossEntropyLoss(nn.Module):
    """Pixel-wise cross-entropy with optional class weights (seed 001's background/cell ``[1, w]``)."""

    def __init__(
        self,
        num_classes: int,
        class_weights: Sequence[float] | None = None,
        label_smoothing: float = 0.0,
        ignore_index: int = -100,
    ) -> None:
        super().__init__()
        if class_weights is not None:
            weights = [float(w) for w in class_weights]
            if len(weights) != num_classes:
                raise ConfigError(
                    f"loss.class_weights has {len(weights)} values {weights} but the target has "
                    f"{num_classes} classes; give one weight per class."
                )
            if any(w < 0 for w in weights) or not any(w > 0 for w in weights):
                raise ConfigError(f"loss.class_weights must be >= 0 with at least one > 0, got {weights}.")
            self.register_buffer("class_weights", torch.tensor(weights, dtype=torch.float32))
        else:
            self.class_weights = None
        if not 0.0 <= label_smoothing < 1.0:
            raise ConfigError(f"loss.label_smoothing must be in [0, 1), got {label_smoothing}.")
        self.label_smoothing = label_smoothing
        self.ignore_index = ignore_index

    def forward(self, logits: torch.Tensor, batch: Mapping[str, torch.Tensor]) -> torch.Tensor:
        return F.cross_entropy(
            logits.float(),
            batch["mask"],
            weight=self.class_weights,
            ignore_index=self.ignore_index,
            label_smoothing=self.label_smoothing,
        )
