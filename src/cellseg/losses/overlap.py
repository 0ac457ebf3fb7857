"""Soft overlap losses on the softmax: Dice and Tversky (Dice is Tversky with alpha = beta = 1/2).

Both take per-class soft counts over the annotated pixels, with p = softmax probability and g = one-hot
target: TP = sum p g, FP = sum p (1 - g), FN = sum (1 - p) g, summed over each image (``per_image``) or
over the whole batch (nnU-Net's "batch dice", the default: stable when a crop holds few cells). For the
binary target without background this is the Dice of the cell probability softmax[1] = sigmoid(l1 - l0),
exactly the single-logit form of seed 003.
"""

from __future__ import annotations

import torch

from cellseg.errors import ConfigError
from cellseg.losses.base import SegmentationLoss, check_number, one_hot


def soft_counts(
    probs: torch.Tensor, onehot: torch.Tensor, valid: torch.Tensor, per_image: bool
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Soft TP, FP, FN per class: shape (B, K) when ``per_image`` else (K,). Ignored pixels count nowhere."""
    probs = probs * valid[:, None]
    dims = (2, 3) if per_image else (0, 2, 3)
    true_pos = (probs * onehot).sum(dims)
    false_pos = probs.sum(dims) - true_pos
    false_neg = onehot.sum(dims) - true_pos
    return true_pos, false_pos, false_neg


class _SoftOverlapLoss(SegmentationLoss):
    def __init__(
        self,
        num_classes: int,
        per_image: bool = False,
        include_background: bool = False,
        smooth: float = 1e-5,
        ignore_index: int = -100,
    ) -> None:
        super().__init__(num_classes, ignore_index)
        self.per_image = bool(per_image)
        self.include_background = bool(include_background)
        self.smooth = check_number("smooth", smooth, 0.0)

    def score(self, tp: torch.Tensor, fp: torch.Tensor, fn: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def loss_from_score(self, score: torch.Tensor) -> torch.Tensor:
        return 1.0 - score

    def compute(self, logits, target, valid, batch):
        probs = torch.softmax(logits, dim=1)
        counts = soft_counts(probs, one_hot(target, valid, self.num_classes), valid, self.per_image)
        score = self.score(*counts)
        if not self.include_background:
            score = score[..., 1:]
        return self.loss_from_score(score).mean()


class DiceLoss(_SoftOverlapLoss):
    """Soft Dice loss 1 - mean_c (2 TP_c + s) / (2 TP_c + FP_c + FN_c + s).

    The mean runs over classes (without background by default, as nnU-Net) and, with ``per_image``, over
    images too: seed 003's "1 - mean per-sample soft Dice", smooth 1e-5 in numerator and denominator.
    ``smooth`` keeps an empty class from giving 0/0 (an absent class predicted absent scores ~1).
    """

    def score(self, tp, fp, fn):
        return (2.0 * tp + self.smooth) / (2.0 * tp + fp + fn + self.smooth)


class TverskyLoss(_SoftOverlapLoss):
    """Tversky loss (Salehi et al. 2017): mean_c (1 - T_c)^gamma, T = (TP + s) / (TP + alpha FP + beta FN + s).

    ``alpha`` weighs false positives, ``beta`` false negatives: beta > alpha favours recall (the default
    0.3 / 0.7 of the paper). alpha = beta = 0.5 is Dice; gamma > 1 gives the focal Tversky loss.
    """

    def __init__(
        self,
        num_classes: int,
        alpha: float = 0.3,
        beta: float = 0.7,
        gamma: float = 1.0,
        per_image: bool = False,
        include_background: bool = False,
        smooth: float = 1e-5,
        ignore_index: int = -100,
    ) -> None:
        super().__init__(num_classes, per_image, include_background, smooth, ignore_index)
        self.alpha = check_number("alpha", alpha, 0.0, 1.0)
        self.beta = check_number("beta", beta, 0.0, 1.0)
        if self.alpha + self.beta == 0:
            raise ConfigError(
                "loss.alpha and loss.beta must not both be 0 (the loss would ignore every error)."
            )
        self.gamma = check_number("gamma", gamma, 0.0, low_open=True)

    def score(self, tp, fp, fn):
        return (tp + self.smooth) / (tp + self.alpha * fp + self.beta * fn + self.smooth)

    def loss_from_score(self, score):
        return (1.0 - score).clamp_min(0.0) ** self.gamma
