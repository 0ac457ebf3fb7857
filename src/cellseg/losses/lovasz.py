"""Lovász-softmax loss (Berman, Rannen Triki, Blaschko, CVPR 2018): a convex surrogate of 1 - IoU.

For class c, with per-pixel errors e = |g_c - p_c| sorted in decreasing order, the loss is the dot
product of the sorted errors with the gradient of the Lovász extension of the Jaccard loss,
Delta J_c(pi) = J(pi_1..i) - J(pi_1..i-1). At one-hot (hard) probabilities it equals 1 - IoU_c exactly;
the mean over classes then is 1 - mean IoU, the metric it optimises.
"""

from __future__ import annotations

import torch

from cellseg.errors import ConfigError
from cellseg.losses.base import SegmentationLoss


def lovasz_grad(gt_sorted: torch.Tensor) -> torch.Tensor:
    """Gradient of the Lovász extension of the Jaccard loss w.r.t. sorted errors (Berman et al., alg. 1)."""
    gts = gt_sorted.sum()
    intersection = gts - gt_sorted.cumsum(0)
    union = gts + (1.0 - gt_sorted).cumsum(0)
    jaccard = 1.0 - intersection / union
    if len(gt_sorted) > 1:
        jaccard[1:] = jaccard[1:] - jaccard[:-1]
    return jaccard


def lovasz_softmax_flat(
    probs: torch.Tensor, labels: torch.Tensor, classes: list[int], only_present: bool
) -> torch.Tensor | None:
    """Mean Lovász loss over ``classes`` for flat probabilities (P, K) and labels (P,); None if no class counts."""
    losses = []
    for c in classes:
        fg = (labels == c).to(probs.dtype)
        if only_present and fg.sum() == 0:
            continue
        errors_sorted, order = torch.sort((fg - probs[:, c]).abs(), descending=True)
        losses.append(torch.dot(errors_sorted, lovasz_grad(fg[order])))
    return torch.stack(losses).mean() if losses else None


class LovaszSoftmaxLoss(SegmentationLoss):
    """Lovász-softmax over annotated pixels, per batch (default) or averaged per image.

    ``classes="present"`` (the paper's default) scores only classes that occur in the ground truth of the
    batch (or image); ``"all"`` scores every class. ``include_background`` keeps class 0 (as the paper).
    """

    def __init__(
        self,
        num_classes: int,
        per_image: bool = False,
        classes: str = "present",
        include_background: bool = True,
        ignore_index: int = -100,
    ) -> None:
        super().__init__(num_classes, ignore_index)
        if classes not in {"present", "all"}:
            raise ConfigError(f"loss.classes must be 'present' or 'all', got {classes!r}.")
        self.only_present = classes == "present"
        self.per_image = bool(per_image)
        self.classes = list(range(0 if include_background else 1, self.num_classes))

    def compute(self, logits, target, valid, batch):
        probs = torch.softmax(logits, dim=1).permute(0, 2, 3, 1)  # (B, H, W, K)
        groups = (
            [(probs[i][valid[i]], target[i][valid[i]]) for i in range(len(probs))]
            if self.per_image
            else [(probs[valid], target[valid])]
        )
        losses = [lovasz_softmax_flat(p, t, self.classes, self.only_present) for p, t in groups]
        losses = [loss for loss in losses if loss is not None]
        return torch.stack(losses).mean() if losses else logits.sum() * 0.0
