"""Sigmoid binary cross-entropy for a network that outputs K logits per pixel."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from cellseg.errors import ConfigError
from cellseg.losses.base import SegmentationLoss, check_number, masked_mean, one_hot


class BinaryCrossEntropyLoss(SegmentationLoss):
    """BCE with logits, mean over annotated pixels; ``pos_weight`` multiplies the positive term.

    cellseg networks always emit K logits. For the binary target (K = 2) the binary logit is
    z = l1 - l0: softmax over two classes equals sigmoid(z), so BCE(z, y = [mask == 1]) is the
    single-logit BCE of seeds 002/003/005 on the same network (and argmax stays the prediction).
    ``pos_weight`` is then one number (cell pixels count pos_weight times; PyTorch's plain mean, unlike
    CE's weighted mean). For K > 2 the term is one-vs-rest: a sigmoid on every logit against the one-hot
    target, averaged over pixels and classes, and ``pos_weight`` is one number or one per class.
    """

    def __init__(
        self,
        num_classes: int,
        pos_weight: float | Sequence[float] | None = None,
        ignore_index: int = -100,
    ) -> None:
        super().__init__(num_classes, ignore_index)
        self.pos_weight: torch.Tensor | None
        if pos_weight is None:
            self.pos_weight = None
            return
        values = [pos_weight] if isinstance(pos_weight, (int, float)) else list(pos_weight)
        expected = 1 if self.num_classes == 2 else self.num_classes
        if len(values) not in {1, expected}:
            raise ConfigError(
                f"loss.pos_weight must be one number{'' if expected == 1 else f' or {expected} (one per class)'}, "
                f"got {pos_weight!r}."
            )
        weights = [check_number("pos_weight", v, 0.0, low_open=True) for v in values]
        self.register_buffer("pos_weight", torch.tensor(weights, dtype=torch.float32))

    def compute(self, logits, target, valid, batch):
        if self.num_classes == 2:
            per_pixel = F.binary_cross_entropy_with_logits(
                binary_logit(logits), (target == 1).float(), pos_weight=self.pos_weight, reduction="none"
            )
            return masked_mean(per_pixel, valid)
        pos_weight = None if self.pos_weight is None else self.pos_weight.view(1, -1, 1, 1)
        per_pixel = F.binary_cross_entropy_with_logits(
            logits, one_hot(target, valid, self.num_classes), pos_weight=pos_weight, reduction="none"
        )
        return masked_mean(per_pixel.mean(dim=1), valid)


def binary_logit(logits: torch.Tensor) -> torch.Tensor:
    """l1 - l0 of two-class logits (B, 2, H, W): the logit whose sigmoid is softmax's cell probability."""
    if logits.shape[1] != 2:
        raise ValueError(f"binary_logit needs 2 classes, got {logits.shape[1]}.")
    return logits[:, 1] - logits[:, 0]
