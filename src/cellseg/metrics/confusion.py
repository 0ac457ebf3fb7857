"""Per-epoch pixel metrics from one confusion matrix.

Accumulating a K x K confusion matrix (rows = true class, columns = predicted class) and deriving every
score from it at the end of the epoch makes the scores exact over all pixels of the epoch and exact
under DDP: ranks only sum their matrices. Per-batch averages of Dice would weight small batches wrongly.

Empty conventions (per class c, TP/FP/FN pooled over the epoch):

- a class with no true and no predicted pixel has nothing to score: its ``dice_c``/``iou_c``/precision/
  recall are NaN and it is left out of the means; if every foreground class is absent the means are 1
  (nothing to find, nothing predicted: a perfect result);
- otherwise a 0/0 ratio counts as 0 (precision of a class never predicted but present, recall of a class
  predicted but absent): the prediction is wrong, as Dice = 0 says;
- ``acc_<class>`` (= recall of the class, the "background / cell accuracy" of seed 001) is NaN when the
  class has no true pixel; ``pixel_acc`` is NaN when no pixel was annotated.
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


def _ratio(numerator: torch.Tensor, denominator: torch.Tensor, present: torch.Tensor) -> torch.Tensor:
    """numerator / denominator; 0 where the denominator is 0; NaN for absent classes."""
    value = torch.where(denominator > 0, numerator / denominator.clamp_min(1), torch.zeros_like(numerator))
    return torch.where(present, value, torch.nan)


def _foreground_mean(values: torch.Tensor) -> float:
    fg = values[1:] if len(values) > 1 else values
    fg = fg[~torch.isnan(fg)]
    return float(fg.mean()) if len(fg) else 1.0


def scores_from_confusion(confmat: torch.Tensor, class_names: Sequence[str]) -> dict[str, float]:
    """Pixel scores from a confusion matrix (see the module docstring for empty classes).

    Keys: ``dice``, ``iou``, ``precision``, ``recall`` (means over the foreground classes 1..K-1; Dice is
    the pixel F1), ``pixel_acc``, and per class ``dice_<name>``, ``iou_<name>``, ``acc_<name>`` (recall).
    """
    cm = confmat.double()
    true_pos = cm.diag()
    support = cm.sum(dim=1)  # true pixels per class
    predicted = cm.sum(dim=0)
    total = cm.sum()
    union = support + predicted - true_pos
    present = union > 0
    dice = _ratio(2 * true_pos, support + predicted, present)
    iou = _ratio(true_pos, union, present)
    precision = _ratio(true_pos, predicted, present)
    recall = _ratio(true_pos, support, present)

    scores = {
        "dice": _foreground_mean(dice),
        "iou": _foreground_mean(iou),
        "precision": _foreground_mean(precision),
        "recall": _foreground_mean(recall),
        "pixel_acc": float(true_pos.sum() / total) if total > 0 else float("nan"),
    }
    for index, name in enumerate(class_names):
        scores[f"dice_{name}"] = float(dice[index])
        scores[f"iou_{name}"] = float(iou[index])
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
