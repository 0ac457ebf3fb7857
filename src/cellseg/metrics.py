"""Per-epoch segmentation metrics from one confusion matrix.

Accumulating a K x K confusion matrix (rows = true class, columns = predicted class) and deriving every
score from it at the end of the epoch makes the scores exact over all pixels of the epoch and exact
under DDP: ranks only sum their matrices. Per-batch averages of Dice would weight small batches wrongly.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torchmetrics import Metric


def confusion_matrix(
    preds: torch.Tensor, target: torch.Tensor, num_classes: int, ignore_index: int | None = None
) -> torch.Tensor:
    """K x K pixel counts (int64) of true class (rows) versus predicted class (columns)."""
    preds, target = preds.reshape(-1), target.reshape(-1)
    if ignore_index is not None:
        keep = target != ignore_index
        preds, target = preds[keep], target[keep]
    bins = torch.bincount(target.long() * num_classes + preds.long(), minlength=num_classes**2)
    return bins.reshape(num_classes, num_classes)


def scores_from_confusion(confmat: torch.Tensor, class_names: Sequence[str]) -> dict[str, float]:
    """Dice, IoU, pixel accuracy and per-class accuracy (recall) from a confusion matrix.

    ``dice`` and ``iou`` average the foreground classes (all but class 0). A class with no true and no
    predicted pixel has nothing to score and is left out of the average; if every foreground class is
    absent, the prediction is perfect and the score is 1.
    """
    cm = confmat.double()
    true_pos = cm.diag()
    support = cm.sum(dim=1)  # true pixels per class
    predicted = cm.sum(dim=0)
    total = cm.sum()
    union = support + predicted - true_pos
    present = union > 0
    dice = torch.where(present, 2 * true_pos / (support + predicted).clamp_min(1), torch.nan)
    iou = torch.where(present, true_pos / union.clamp_min(1), torch.nan)

    def foreground_mean(values: torch.Tensor) -> float:
        fg = values[1:] if len(values) > 1 else values
        fg = fg[~torch.isnan(fg)]
        return float(fg.mean()) if len(fg) else 1.0

    scores = {
        "dice": foreground_mean(dice),
        "iou": foreground_mean(iou),
        "pixel_acc": float(true_pos.sum() / total) if total > 0 else float("nan"),
    }
    for index, name in enumerate(class_names):
        scores[f"acc_{name}"] = (
            float(true_pos[index] / support[index]) if support[index] > 0 else float("nan")
        )
    return scores


class SegmentationMetrics(Metric):
    """Stateful wrapper: ``update(preds, target)`` per batch, ``compute()`` per epoch, synced across ranks."""

    full_state_update = False
    is_differentiable = False
    higher_is_better = True

    def __init__(self, class_names: Sequence[str], ignore_index: int | None = None) -> None:
        super().__init__()
        self.class_names = tuple(class_names)
        self.num_classes = len(self.class_names)
        self.ignore_index = ignore_index
        self.add_state(
            "confmat",
            default=torch.zeros(self.num_classes, self.num_classes, dtype=torch.long),
            dist_reduce_fx="sum",
        )

    def update(self, preds: torch.Tensor, target: torch.Tensor) -> None:
        self.confmat += confusion_matrix(preds, target, self.num_classes, self.ignore_index)

    def compute(self) -> dict[str, float]:
        return scores_from_confusion(self.confmat, self.class_names)
