"""What every loss term shares: the call convention, ignore_index handling and class-weight parsing.

A loss is called ``loss(logits, batch)``: ``logits`` (B, K, H, W) are the network's raw scores for the K
target classes and ``batch`` is the data loader's dict, of which every term reads ``mask`` (B, H, W) int64
class ids, where ``ignore_index`` marks unannotated pixels. Terms that need more (``weight_map``) read it
from the same dict, so the training loop never has to know which loss it runs.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from cellseg.errors import ConfigError


def check_number(
    name: str, value: float, low: float, high: float = math.inf, *, low_open: bool = False
) -> float:
    """``value`` as a float, or ConfigError naming ``loss.<name>`` and the allowed range."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ConfigError(f"loss.{name} must be a number, got {value!r}.") from None
    below = number <= low if low_open else number < low
    if not math.isfinite(number) or below or number > high:
        bracket = "(" if low_open else "["
        raise ConfigError(f"loss.{name} must be in {bracket}{low}, {high}], got {value!r}.")
    return number


def resolve_class_weights(
    num_classes: int,
    class_weights: Sequence[float] | None,
    cell_weight: float | None,
) -> list[float] | None:
    """One weight per class from ``class_weights`` or the ``cell_weight`` shorthand, or None (unweighted).

    ``cell_weight = w`` means ``class_weights = [1, w, ..., w]``: background keeps weight 1 and every other
    class (the cell classes) gets ``w``; for the binary target that is seed 001's ``[1, w]``. It exists so
    that one number can be swept from the command line (``loss.cell_weight=0.1,1,10``). Giving both is
    ambiguous and refused.
    """
    if class_weights is not None and cell_weight is not None:
        raise ConfigError(
            f"loss.class_weights={list(class_weights)} and loss.cell_weight={cell_weight} both set the class "
            "weights; give one of them (cell_weight=w means class_weights=[1, w, ..., w])."
        )
    if cell_weight is not None:
        weight = check_number("cell_weight", cell_weight, 0.0, low_open=True)
        return [1.0] + [weight] * (num_classes - 1)
    if class_weights is None:
        return None
    if isinstance(class_weights, str) or not isinstance(class_weights, Sequence):
        raise ConfigError(
            f"loss.class_weights must be a list of {num_classes} numbers, got {class_weights!r}."
        )
    weights = [check_number("class_weights", w, 0.0) for w in class_weights]
    if len(weights) != num_classes:
        raise ConfigError(
            f"loss.class_weights has {len(weights)} values {weights} but the target has "
            f"{num_classes} classes; give one weight per class."
        )
    if not any(w > 0 for w in weights):
        raise ConfigError(f"loss.class_weights must be >= 0 with at least one > 0, got {weights}.")
    return weights


def one_hot(target: torch.Tensor, valid: torch.Tensor, num_classes: int) -> torch.Tensor:
    """(B, K, H, W) float one-hot of ``target``; ignored pixels are all-zero rows."""
    encoded = F.one_hot(torch.where(valid, target, 0), num_classes).permute(0, 3, 1, 2)
    return encoded.to(torch.float32) * valid[:, None]


class SegmentationLoss(nn.Module):
    """Base of every loss term: checks the inputs and masks ``ignore_index`` once, for all terms.

    Subclasses implement :meth:`compute` on float32 logits (mixed precision never reaches a loss) with
    ``valid`` = annotated pixels. A batch without any annotated pixel yields a loss of 0 that keeps the
    graph (``logits.sum() * 0``) instead of the NaN a mean over no pixels would give.
    """

    #: Whether the term takes ``class_weights`` / ``cell_weight`` (CompositeLoss routes them by this).
    accepts_class_weights: bool = False

    def __init__(self, num_classes: int, ignore_index: int = -100) -> None:
        super().__init__()
        if int(num_classes) < 2:
            raise ConfigError(
                f"A loss needs at least 2 classes (logits per pixel), got num_classes={num_classes}."
            )
        self.num_classes = int(num_classes)
        self.ignore_index = int(ignore_index)
        #: Detached 0-dim tensors of sub-terms of the last forward (empty for a single term).
        self.last_terms: dict[str, torch.Tensor] = {}

    def forward(self, logits: torch.Tensor, batch: Mapping[str, torch.Tensor]) -> torch.Tensor:
        target = batch["mask"]
        if logits.ndim != 4 or logits.shape[1] != self.num_classes:
            raise ValueError(
                f"{type(self).__name__} expects logits (B, {self.num_classes}, H, W), got {tuple(logits.shape)}."
            )
        if target.shape != logits.shape[:1] + logits.shape[2:]:
            raise ValueError(
                f"{type(self).__name__}: mask {tuple(target.shape)} does not match logits {tuple(logits.shape)}."
            )
        valid = target != self.ignore_index
        if not bool(valid.any()):
            return logits.sum() * 0.0
        return self.compute(logits.float(), target.long(), valid, batch)

    def compute(
        self,
        logits: torch.Tensor,
        target: torch.Tensor,
        valid: torch.Tensor,
        batch: Mapping[str, torch.Tensor],
    ) -> torch.Tensor:
        raise NotImplementedError


def masked_mean(
    values: torch.Tensor, valid: torch.Tensor, weights: torch.Tensor | None = None
) -> torch.Tensor:
    """Mean of per-pixel ``values`` over ``valid`` pixels, weighted (sum w*v / sum w) when ``weights`` given."""
    mask = valid.to(values.dtype)
    if weights is None:
        return (values * mask).sum() / mask.sum().clamp_min(1.0)
    weighted = weights * mask
    return (values * weighted).sum() / weighted.sum().clamp_min(torch.finfo(values.dtype).tiny)
