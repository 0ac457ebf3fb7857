"""Segmentation losses: single terms and their weighted composition (the ``loss`` config group).

Every loss is an ``nn.Module`` built as ``instantiate(cfg.loss, num_classes=K, ignore_index=I)`` and
called ``loss(logits, batch)`` with logits (B, K, H, W) and the batch dict (``mask``, and ``weight_map``
for ``unet_weighted_ce``). See :data:`LOSS_TERMS` for the terms and :class:`CompositeLoss` for sums.
"""

from cellseg.losses.base import SegmentationLoss, resolve_class_weights
from cellseg.losses.binary import BinaryCrossEntropyLoss, binary_logit
from cellseg.losses.composite import LOSS_TERMS, CompositeLoss
from cellseg.losses.cross_entropy import CrossEntropyLoss, FocalLoss, UNetWeightedCrossEntropyLoss
from cellseg.losses.lovasz import LovaszSoftmaxLoss
from cellseg.losses.overlap import DiceLoss, TverskyLoss
from cellseg.losses.weight_maps import (
    UNetWeightMap,
    unet_weight_map,
    weight_map_for,
    weight_map_from_loss_config,
)

__all__ = [
    "LOSS_TERMS",
    "BinaryCrossEntropyLoss",
    "CompositeLoss",
    "CrossEntropyLoss",
    "DiceLoss",
    "FocalLoss",
    "LovaszSoftmaxLoss",
    "SegmentationLoss",
    "TverskyLoss",
    "UNetWeightMap",
    "UNetWeightedCrossEntropyLoss",
    "binary_logit",
    "resolve_class_weights",
    "unet_weight_map",
    "weight_map_for",
    "weight_map_from_loss_config",
]
