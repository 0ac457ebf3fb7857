"""Pixel-wise cross-entropy losses: plain (class-weighted), focal, and U-Net's weight-map CE."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
import torch.nn.functional as F

from cellseg.errors import ConfigError
from cellseg.losses.base import SegmentationLoss, check_number, masked_mean, resolve_class_weights


class _ClassWeighted(SegmentationLoss):
    """A term with optional per-class weights, from ``class_weights`` or the ``cell_weight`` shorthand."""

    accepts_class_weights = True

    def __init__(
        self,
        num_classes: int,
        class_weights: Sequence[float] | None = None,
        cell_weight: float | None = None,
        ignore_index: int = -100,
    ) -> None:
        super().__init__(num_classes, ignore_index)
        weights = resolve_class_weights(self.num_classes, class_weights, cell_weight)
        self.class_weights: torch.Tensor | None
        if weights is None:
            self.class_weights = None
        else:
            self.register_buffer("class_weights", torch.tensor(weights, dtype=torch.float32))


class CrossEntropyLoss(_ClassWeighted):
    """Softmax cross-entropy, mean over annotated pixels (``loss=ce``).

    With class weights w_c the mean is PyTorch's weighted mean, sum_x w_y(x) CE(x) / sum_x w_y(x): raising
    the cell weight shifts the decision towards "cell" (more cell recall, less background recall), the
    trade-off seed 001 plots against its CE weight. ``label_smoothing`` is PyTorch's.
    """

    def __init__(
        self,
        num_classes: int,
        class_weights: Sequence[float] | None = None,
        label_smoothing: float = 0.0,
        ignore_index: int = -100,
        cell_weight: float | None = None,
    ) -> None:
        super().__init__(num_classes, class_weights, cell_weight, ignore_index)
        if not 0.0 <= float(label_smoothing) < 1.0:
            raise ConfigError(f"loss.label_smoothing must be in [0, 1), got {label_smoothing}.")
        self.label_smoothing = float(label_smoothing)

    def compute(self, logits, target, valid, batch):
        return F.cross_entropy(
            logits,
            target,
            weight=self.class_weights,
            ignore_index=self.ignore_index,
            label_smoothing=self.label_smoothing,
        )


class FocalLoss(_ClassWeighted):
    """Multi-class focal loss (Lin et al. 2017): FL = -alpha_y (1 - p_y)^gamma log p_y on the softmax.

    ``gamma`` down-weights pixels the network already gets right; the optional class weights play the role
    of alpha and are normalised like CE's (sum alpha_y FL / sum alpha_y), so gamma = 0 is exactly ``ce``.
    """

    def __init__(
        self,
        num_classes: int,
        gamma: float = 2.0,
        class_weights: Sequence[float] | None = None,
        cell_weight: float | None = None,
        ignore_index: int = -100,
    ) -> None:
        super().__init__(num_classes, class_weights, cell_weight, ignore_index)
        self.gamma = check_number("gamma", gamma, 0.0)

    def compute(self, logits, target, valid, batch):
        safe_target = torch.where(valid, target, 0)
        log_p = F.log_softmax(logits, dim=1).gather(1, safe_target[:, None]).squeeze(1)
        focal = -((1.0 - log_p.exp()) ** self.gamma) * log_p
        weights = None if self.class_weights is None else self.class_weights[safe_target]
        return masked_mean(focal, valid, weights)


class UNetWeightedCrossEntropyLoss(SegmentationLoss):
    """The U-Net paper's loss: cross-entropy weighted per pixel by ``batch["weight_map"]``.

    E = sum_x w(x) CE(x) / N over the N annotated pixels, with w = w_c + w0 exp(-(d1 + d2)^2 / (2 sigma^2))
    (Ronneberger et al. 2015, eq. 2). The map is a product of the label pipeline
    (:class:`cellseg.data.pipeline.weight_maps.UNetWeightMap`), computed once per image from the whole
    image's instances (d1 and d2 need them, not a crop's) and cropped and augmented with the mask; this
    loss only reads it. ``w0``, ``sigma``, ``class_weights`` (the w_c term: ``"balanced"``, null = 1, or
    [w_background, w_cell]) and ``cell_weight`` (w_c = [1, cell_weight]) are the loss's hyperparameters,
    so ``loss=unet_weighted_ce loss.sigma=4`` configures everything; :attr:`weight_map_settings` hands them
    to the pipeline, which validates them.
    """

    accepts_class_weights = True

    def __init__(
        self,
        num_classes: int,
        w0: float = 10.0,
        sigma: float = 5.0,
        class_weights: str | Sequence[float] | None = "balanced",
        cell_weight: float | None = None,
        ignore_index: int = -100,
    ) -> None:
        super().__init__(num_classes, ignore_index)
        if cell_weight is not None:
            if class_weights not in (None, "balanced"):
                resolve_class_weights(2, class_weights, cell_weight)  # raises: both given
            class_weights = resolve_class_weights(2, None, cell_weight)
        self.weight_map_settings = {"w0": w0, "sigma": sigma, "class_weights": class_weights}

    def compute(self, logits, target, valid, batch: Mapping[str, torch.Tensor]):
        weight_map = batch.get("weight_map")
        if weight_map is None:
            raise ConfigError(
                "loss=unet_weighted_ce needs weight maps: the batch has no 'weight_map'. The data pipeline "
                "must compute them from instance labels (cellseg.data.pipeline.weight_maps.UNetWeightMap) for data "
                "sets that have instance ids; use another loss for data without instances."
            )
        if weight_map.shape != target.shape:
            raise ValueError(
                f"weight_map {tuple(weight_map.shape)} does not match mask {tuple(target.shape)}."
            )
        per_pixel = F.cross_entropy(logits, target, ignore_index=self.ignore_index, reduction="none")
        return masked_mean(per_pixel * weight_map.float(), valid)
