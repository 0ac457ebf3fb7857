"""Regression terms for targets with regression outputs (``target=distance``, ``target=flows``).

The network's regression maps reach a loss through the batch: the LightningModule splits its output by
the target's layout (:class:`~cellseg.outputs.OutputLayout`) and passes the class logits as ``logits``
and the regression maps as ``batch["regression_output"]`` (B, R, H, W), next to the true maps the data
pipeline made, ``batch["regression"]``. So these terms compose with the class terms (CE, Dice) in one
:class:`~cellseg.losses.composite.CompositeLoss`, weighted and swept like them (``loss.mse_weight=5``).
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
import torch.nn.functional as F

from cellseg.errors import ConfigError
from cellseg.losses.base import SegmentationLoss, check_number, masked_mean

#: Where a regression term is scored: every annotated pixel, or annotated cell pixels only.
REGIONS = ("all", "cells")


class RegressionLoss(SegmentationLoss):
    """Base of the regression terms: per-pixel errors averaged over the channels, then over ``region``.

    ``region=cells`` scores pixels whose class is a cell class (class id > 0): the definition of a
    quantity that only exists inside cells (the distance to a cell's border, StarDist's masking);
    ``region=all`` also teaches background pixels their value (zero flow, as in Cellpose).
    """

    def __init__(self, num_classes: int, ignore_index: int = -100, region: str = "all") -> None:
        super().__init__(num_classes, ignore_index)
        if region not in REGIONS:
            raise ConfigError(f"loss region is '{region}'; expected one of {', '.join(REGIONS)}.")
        self.region = region

    def errors(self, predicted: torch.Tensor, true: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def compute(
        self,
        logits: torch.Tensor,
        target: torch.Tensor,
        valid: torch.Tensor,
        batch: Mapping[str, torch.Tensor],
    ) -> torch.Tensor:
        if "regression_output" not in batch or "regression" not in batch:
            raise ValueError(
                f"{type(self).__name__} scores regression outputs, but this target has none; use it with "
                "target=distance or target=flows (loss=distance, loss=flows)."
            )
        predicted, true = batch["regression_output"].float(), batch["regression"].float()
        if predicted.shape != true.shape:
            raise ValueError(
                f"{type(self).__name__}: predicted regression maps {tuple(predicted.shape)} and true ones "
                f"{tuple(true.shape)} differ in shape."
            )
        scored = valid & (target > 0) if self.region == "cells" else valid
        if not bool(scored.any()):
            return predicted.sum() * 0.0
        return masked_mean(self.errors(predicted, true).mean(dim=1), scored)


class MSELoss(RegressionLoss):
    """Mean squared error (Cellpose's flow loss)."""

    def errors(self, predicted: torch.Tensor, true: torch.Tensor) -> torch.Tensor:
        return (predicted - true) ** 2


class SmoothL1Loss(RegressionLoss):
    """Smooth L1 (Huber with slope 1): quadratic below ``beta``, linear above, so outliers weigh less."""

    def __init__(
        self, num_classes: int, ignore_index: int = -100, region: str = "all", beta: float = 0.1
    ) -> None:
        super().__init__(num_classes, ignore_index, region)
        self.beta = check_number("terms.smooth_l1.beta", beta, 0.0, low_open=True)

    def errors(self, predicted: torch.Tensor, true: torch.Tensor) -> torch.Tensor:
        return F.smooth_l1_loss(predicted, true, reduction="none", beta=self.beta)
