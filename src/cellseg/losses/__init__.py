"""Segmentation losses: single terms and their weighted composition (the ``loss`` config group).

Every loss is an ``nn.Module`` built once per run by :func:`build_loss` and called ``loss(logits,
batch)`` with logits (B, K, H, W) and the batch dict (``mask``, and ``weight_map`` for
``unet_weighted_ce``, which the label pipeline computes; ``regression`` and ``regression_output`` for
the regression terms ``mse`` and ``smooth_l1``, see :mod:`cellseg.losses.regression`). See :data:`LOSS_TERMS` for the terms and
:class:`CompositeLoss` for sums.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from hydra.utils import instantiate
from torch import nn

from cellseg.losses.base import SegmentationLoss, resolve_class_weights
from cellseg.losses.binary import BinaryCrossEntropyLoss, binary_logit
from cellseg.losses.composite import LOSS_TERMS, CompositeLoss
from cellseg.losses.cross_entropy import CrossEntropyLoss, FocalLoss, UNetWeightedCrossEntropyLoss
from cellseg.losses.lovasz import LovaszSoftmaxLoss
from cellseg.losses.overlap import DiceLoss, TverskyLoss
from cellseg.losses.regression import MSELoss, RegressionLoss, SmoothL1Loss


def build_loss(config: Mapping[str, Any], num_classes: int, ignore_index: int = -100) -> nn.Module:
    """The loss of a resolved ``loss`` config, sized by the target's classes."""
    return instantiate(dict(config), num_classes=num_classes, ignore_index=ignore_index)


def trains_regression(loss: nn.Module) -> bool:
    """Whether a built loss has a regression term (alone or composed)."""
    return any(isinstance(module, RegressionLoss) for module in loss.modules())


def weight_map_settings(loss: nn.Module) -> dict[str, Any] | None:
    """Settings of the per-pixel weight map a built loss reads from its batches (a ``unet_weighted_ce``
    term, alone or composed), for the label pipeline to compute; None when it reads none."""
    for module in loss.modules():
        settings = getattr(module, "weight_map_settings", None)
        if settings is not None:
            return dict(settings)
    return None


__all__ = [
    "LOSS_TERMS",
    "BinaryCrossEntropyLoss",
    "CompositeLoss",
    "CrossEntropyLoss",
    "DiceLoss",
    "FocalLoss",
    "LovaszSoftmaxLoss",
    "MSELoss",
    "RegressionLoss",
    "SegmentationLoss",
    "SmoothL1Loss",
    "TverskyLoss",
    "UNetWeightedCrossEntropyLoss",
    "binary_logit",
    "build_loss",
    "resolve_class_weights",
    "trains_regression",
    "weight_map_settings",
]
