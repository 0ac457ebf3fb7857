"""Instance (object) metrics: predicted cells matched one-to-one to ground-truth cells by IoU.

Semantics of StarDist's ``matching`` (Schmidt et al. 2018; Weigert et al. 2020) and Cellpose's
``average_precision`` (Stringer et al. 2021): for each IoU threshold tau, predicted and true instances are
matched by an optimal one-to-one assignment (Hungarian, ``scipy.optimize.linear_sum_assignment``, that
maximises the number of pairs with IoU >= tau, ties broken by IoU), and a match counts when its
IoU >= tau. Then, with TP matches, FP unmatched predictions and FN unmatched true instances:

- precision = TP / (TP + FP), recall = TP / (TP + FN), F1 = 2 TP / (2 TP + FP + FN);
- AP_tau = TP / (TP + FP + FN) (the "average precision" of the cell-segmentation literature, DSB 2018);
  ``map`` averages it over tau = 0.5, 0.55, ..., 0.95;
- panoptic quality PQ = sum of the matched IoUs / (TP + FP/2 + FN/2) = SQ * RQ, with SQ the mean matched
  IoU and RQ = F1 (Kirillov et al. 2019; StarDist's ``panoptic_quality``).

Counts are summed over all images of an epoch before the ratios are taken (StarDist's
``matching_dataset``), so every instance weighs the same and DDP ranks only sum counts.

Empty conventions: an image with no true and no predicted instance adds nothing; an image with
predictions but no true instance adds them all as FP (and the reverse as FN). A ratio with a zero
denominator is 1 when nothing was to be found and nothing was predicted (0 true and 0 predicted
instances in the whole epoch: a perfect result), else 0.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from scipy import ndimage as ndi
from scipy.optimize import linear_sum_assignment
from skimage.segmentation import watershed
from torchmetrics import Metric

from cellseg.errors import ConfigError

IOU_THRESHOLDS: tuple[float, ...] = tuple(np.round(np.arange(0.5, 0.951, 0.05), 2).tolist())


def instances_from_classes(
    class_map: np.ndarray, foreground: Sequence[int] = (1,), connectivity: int = 1
) -> np.ndarray:
    """Instances as connected components of the ``foreground`` classes (4-connected by default)."""
    mask = np.isin(np.asarray(class_map), list(foreground))
    structure = ndi.generate_binary_structure(2, connectivity)
    return ndi.label(mask, structure=structure)[0]


def instances_from_boundary_classes(
    class_map: np.ndarray, interior: int = 1, boundary: int = 2
) -> np.ndarray:
    """Instances of a background / interior / boundary prediction (the ``boundary`` target).

    Cell interiors separated by boundary pixels are the seeds (4-connected components of ``interior``);
    each then grows into the adjacent ``boundary`` pixels (watershed flooding restricted to interior and
    boundary pixels), so touching cells come out as separate instances with their border pixels.
    """
    class_map = np.asarray(class_map)
    seeds = instances_from_classes(class_map, (interior,))
    cell = (class_map == interior) | (class_map == boundary)
    return watershed(np.zeros(class_map.shape, np.uint8), markers=seeds, mask=cell, connectivity=1)


def iou_matrix(true_instances: np.ndarray, pred_instances: np.ndarray) -> np.ndarray:
    """IoU of every true instance (rows, ids in increasing order) with every predicted one (columns)."""
    true_instances, pred_instances = np.asarray(true_instances), np.asarray(pred_instances)
    if true_instances.shape != pred_instances.shape:
        raise ValueError(
            f"true {true_instances.shape} and predicted {pred_instances.shape} instances differ in shape."
        )
    _, true_ids = np.unique(true_instances, return_inverse=True)
    _, pred_ids = np.unique(pred_instances, return_inverse=True)
    # Index 0 of each is background when the image has any (ids start at 0); drop it below.
    has_true_bg, has_pred_bg = (true_instances == 0).any(), (pred_instances == 0).any()
    overlap = np.zeros((true_ids.max() + 1, pred_ids.max() + 1), dtype=np.int64)
    np.add.at(overlap, (true_ids.ravel(), pred_ids.ravel()), 1)
    overlap = overlap[int(has_true_bg) :, int(has_pred_bg) :]
    true_area = np.bincount(true_ids.ravel())[int(has_true_bg) :]
    pred_area = np.bincount(pred_ids.ravel())[int(has_pred_bg) :]
    union = true_area[:, None] + pred_area[None, :] - overlap
    return np.where(union > 0, overlap / np.maximum(union, 1), 0.0)


def match_counts(
    true_instances: np.ndarray, pred_instances: np.ndarray, thresholds: Sequence[float] = IOU_THRESHOLDS
) -> np.ndarray:
    """(T, 4) float64: TP, FP, FN and the summed IoU of the TP matches at each IoU threshold (one image)."""
    iou = iou_matrix(true_instances, pred_instances)
    n_true, n_pred = iou.shape
    counts = np.zeros((len(thresholds), 4))
    for row, threshold in enumerate(thresholds):
        matched_iou = np.zeros(0)
        if n_true and n_pred:
            # StarDist: maximise the number of pairs above the threshold; the IoU breaks ties.
            costs = -(iou >= threshold).astype(float) - iou / (2 * min(n_true, n_pred))
            rows, cols = linear_sum_assignment(costs)
            matched_iou = iou[rows, cols]
            matched_iou = matched_iou[matched_iou >= threshold]
        tp = len(matched_iou)
        counts[row] = [tp, n_pred - tp, n_true - tp, matched_iou.sum()]
    return counts


def _ratio(numerator: np.ndarray, denominator: np.ndarray, nothing_at_all: bool) -> np.ndarray:
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(denominator > 0, numerator / denominator, 1.0 if nothing_at_all else 0.0)


def scores_from_counts(counts: np.ndarray, thresholds: Sequence[float] = IOU_THRESHOLDS) -> dict[str, float]:
    """Scores from counts summed over images (T, 4). See the module docstring for the definitions.

    Keys: ``ap50`` ... ``ap95`` (AP at each threshold, named by round(100 tau)), ``map`` (their mean), and
    at the first threshold (0.5): ``inst_precision``, ``inst_recall``, ``inst_f1``, ``pq``, ``sq``.
    """
    tp, fp, fn, iou_sum = (counts[:, i] for i in range(4))
    nothing = bool(tp[0] + fp[0] + fn[0] == 0)
    ap = _ratio(tp, tp + fp + fn, nothing)
    scores = {f"ap{round(100 * t)}": float(value) for t, value in zip(thresholds, ap, strict=True)}
    scores["map"] = float(ap.mean())
    scores["inst_precision"] = float(_ratio(tp, tp + fp, nothing)[0])
    scores["inst_recall"] = float(_ratio(tp, tp + fn, nothing)[0])
    scores["inst_f1"] = float(_ratio(2 * tp, 2 * tp + fp + fn, nothing)[0])
    scores["pq"] = float(_ratio(iou_sum, tp + fp / 2 + fn / 2, nothing)[0])
    scores["sq"] = float(_ratio(iou_sum, tp, nothing)[0])
    return scores


def instance_scores(
    true_instances: Sequence[np.ndarray] | np.ndarray,
    pred_instances: Sequence[np.ndarray] | np.ndarray,
    thresholds: Sequence[float] = IOU_THRESHOLDS,
) -> dict[str, float]:
    """Scores of a set of images (lists or (N, H, W) stacks of instance label maps, 0 = background)."""
    counts = np.zeros((len(thresholds), 4))
    for true, pred in zip(true_instances, pred_instances, strict=True):
        counts += match_counts(true, pred, thresholds)
    return scores_from_counts(counts, thresholds)


_PREDICTIONS = {"components", "boundary", "instances"}


class InstanceMetrics(Metric):
    """Instance scores over an epoch: ``update(preds, instances)`` per batch, synced across DDP ranks.

    ``preds`` (B, H, W) are turned into instances according to ``predictions``: ``"components"``
    (connected components of the non-background classes of a class map), ``"boundary"`` (class map of the
    background / interior / boundary target, :func:`instances_from_boundary_classes`) or ``"instances"``
    (already instance ids). ``instances`` (B, H, W) are the true instance ids (0 = background). The state
    is TP, FP, FN and the summed matched IoU per threshold: sums, exact under DDP.
    """

    full_state_update = False
    is_differentiable = False
    higher_is_better = True

    def __init__(self, predictions: str = "components", thresholds: Sequence[float] = IOU_THRESHOLDS) -> None:
        super().__init__()
        if predictions not in _PREDICTIONS:
            raise ConfigError(f"predictions must be one of {sorted(_PREDICTIONS)}, got {predictions!r}.")
        self.predictions = predictions
        self.thresholds = tuple(float(t) for t in thresholds)
        self.add_state(
            "counts", default=torch.zeros(len(self.thresholds), 4, dtype=torch.float64), dist_reduce_fx="sum"
        )

    def _to_instances(self, pred: np.ndarray) -> np.ndarray:
        if self.predictions == "components":
            return instances_from_classes(pred, foreground=[c for c in np.unique(pred) if c > 0])
        if self.predictions == "boundary":
            return instances_from_boundary_classes(pred)
        return pred

    def update(self, preds: torch.Tensor, instances: torch.Tensor) -> None:
        for pred, true in zip(preds.detach().cpu().numpy(), instances.detach().cpu().numpy(), strict=True):
            counts = match_counts(true, self._to_instances(pred), self.thresholds)
            self.counts += torch.as_tensor(counts, device=self.counts.device)

    def compute(self) -> dict[str, float]:
        return scores_from_counts(self.counts.cpu().numpy(), self.thresholds)
