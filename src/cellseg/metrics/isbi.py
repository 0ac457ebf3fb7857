"""ISBI 2012 EM segmentation challenge scores, as the challenge's Fiji scripts compute them.

Official ranking metrics (Arganda-Carreras et al., Front. Neuroanat. 9:142, 2015; Fiji
``trainableSegmentation.metrics.RandError`` / ``VariationOfInformation``, script by I. Arganda-Carreras,
2016): the maximal foreground-restricted Rand score V_rand and information score V_info after border
thinning. For each threshold t (0, 0.1, ..., 1, as Fiji's ``for (t = 0; t <= 1; t += 0.1)``):

1. ground truth: 4-connected components of the cell pixels (label > 0; ISBI labels are 255 = cell
   interior, 0 = membrane); membrane = 0;
2. proposal: cell = probability > t; its membrane is thinned to one pixel by a 4-connected watershed
   seeded with the 4-connected cell components (:func:`thin_boundaries`);
3. contingency counts n_ij between ground-truth segment i and proposal segment j over the **ground-truth
   foreground only** (n pixels; ground-truth label 0 pruned); proposal-0 pixels (the thinned boundary)
   inside the foreground count as **singletons**, one segment each;
4. with p_ij = n_ij / n, t_i = sum_j p_ij (ground truth), s_j = sum_i p_ij (proposal, j >= 1) and
   p_i0 the boundary share of segment i (:func:`foreground_restricted_scores`):

   - V_rand_merge ("precision") = (sum p_ij^2 + sum p_i0 / n) / (sum s_j^2 + sum p_i0 / n),
     V_rand_split ("recall") = (sum p_ij^2 + sum p_i0 / n) / sum t_i^2;
   - H(T) = -sum t_i log t_i, H(S) = -sum s_j log s_j + sum p_i0 log n, I = H(S) + H(T) - H(S, T);
     V_info_merge = I / H(T), V_info_split = I / H(S) (Fiji: a zero H(T) gives merge 0, split 1; a
     zero H(S) merge 1, split 0);
   - V = 2 merge split / (merge + split) for both (0 when both are 0);

5. each score is averaged over slices, and the maximum over thresholds is reported (with the split and
   merge scores at the maximising threshold).

The former headline metric, pixel error = 1 - maximal F-score of pixel similarity, pools TP/FP/FN over
the stack (cell = positive; ground truth > 0, proposal > t) at each threshold (Fiji ``PixelError``).

Conventions beyond Fiji: a slice without ground-truth foreground is left out of the average (Fiji's
result would be NaN); thresholds are exactly 0.0, 0.1, ... only up to floating-point accumulation, as in
Fiji (the last one is 0.9999999999999999, so a binary 0/1 proposal keeps its cells there). Fiji's
watershed flooding surface could not be checked; thinning here floods the binary membrane map (plateau
flooding in breadth-first order, as MATLAB's ``watershed(bw, 4)`` of the original challenge script).

The proposal is a probability of **cell** (the ground truth's polarity); for a probability of boundary
pass ``proposal="boundary"`` (it is flipped to 1 - p).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
import torch
from scipy import ndimage as ndi
from skimage.segmentation import watershed
from torchmetrics import Metric

from cellseg.errors import ConfigError


def fiji_thresholds(start: float = 0.0, stop: float = 1.0, step: float = 0.1) -> tuple[float, ...]:
    """Thresholds of Fiji's ``for (double t = start; t <= stop; t += step)``, floating-point sums included."""
    values, t = [], start
    while t <= stop:
        values.append(t)
        t += step
    return tuple(values)


ISBI_THRESHOLDS = fiji_thresholds()
_FOUR_CONNECTED = ndi.generate_binary_structure(2, 1)


class SliceScores(NamedTuple):
    """Foreground-restricted scores of one slice."""

    v_rand: float
    v_rand_split: float
    v_rand_merge: float
    v_info: float
    v_info_split: float
    v_info_merge: float


SCORE_NAMES = SliceScores._fields


def _f_score(merge: float, split: float) -> float:
    return 2.0 * merge * split / (merge + split) if merge + split > 0 else 0.0


def _xlogx(values: np.ndarray) -> float:
    values = values[values > 0]
    return float(np.sum(values * np.log(values)))


def foreground_restricted_scores(gt_labels: np.ndarray, proposal_labels: np.ndarray) -> SliceScores:
    """V_rand and V_info with their split/merge parts for one slice of segment labels (0 = boundary).

    ``gt_labels`` and ``proposal_labels`` are integer label images of the same shape (for the challenge:
    4-connected ground-truth cells, and the thinned proposal of :func:`thin_boundaries`). All NaN when
    the ground truth has no foreground pixel.
    """
    gt = np.asarray(gt_labels).ravel()
    proposal = np.asarray(proposal_labels).ravel()
    if gt.shape != proposal.shape:
        raise ValueError(
            f"gt_labels {np.shape(gt_labels)} and proposal_labels {np.shape(proposal_labels)} differ."
        )
    foreground = gt != 0
    n = float(foreground.sum())
    if n == 0:
        return SliceScores(*([float("nan")] * 6))
    _, gt_ids = np.unique(gt[foreground], return_inverse=True)
    proposal_fg = proposal[foreground]
    boundary = proposal_fg == 0
    _, proposal_ids = np.unique(proposal_fg[~boundary], return_inverse=True)
    # p_ij over proposal segments j >= 1; the boundary pixels enter through p_i0 only.
    counts = np.zeros((gt_ids.max() + 1, proposal_ids.max() + 1 if len(proposal_ids) else 0))
    np.add.at(counts, (gt_ids[~boundary], proposal_ids), 1.0)
    p_ij = counts / n
    t_i = np.bincount(gt_ids, minlength=len(counts)) / n  # sum over all j, boundary included
    s_j = p_ij.sum(axis=0)
    p_i0 = boundary.sum() / n  # sum_i p_i0

    # Rand (N^2 normalisation; each boundary pixel a singleton contributes (1/n)^2).
    sum_ab = float(np.sum(p_ij**2)) + p_i0 / n
    rand_merge = sum_ab / (float(np.sum(s_j**2)) + p_i0 / n)
    rand_split = sum_ab / float(np.sum(t_i**2))

    # Information: A = ground truth, B = proposal (Fiji's names); singletons add -p_i0 log n.
    sum_a = _xlogx(t_i)
    sum_b = _xlogx(s_j) - p_i0 * np.log(n)
    sum_ab_log = _xlogx(p_ij) - p_i0 * np.log(n)
    h_a, h_b = -sum_a, -sum_b
    if h_b == 0:
        info_merge, info_split = 1.0, 0.0
    elif h_a == 0:
        info_merge, info_split = 0.0, 1.0
    else:
        mutual_information = h_a + h_b + sum_ab_log  # H(A) + H(B) - H(A, B)
        info_merge, info_split = mutual_information / h_a, mutual_information / h_b
    return SliceScores(
        v_rand=float(_f_score(rand_merge, rand_split)),
        v_rand_split=float(rand_split),
        v_rand_merge=float(rand_merge),
        v_info=float(_f_score(info_merge, info_split)),
        v_info_split=float(info_split),
        v_info_merge=float(info_merge),
    )


def ground_truth_segments(gt: np.ndarray) -> np.ndarray:
    """4-connected components of the ground truth's cell pixels (> 0); membrane = 0."""
    return ndi.label(np.asarray(gt) > 0, structure=_FOUR_CONNECTED)[0]


def thin_boundaries(prob: np.ndarray, threshold: float) -> np.ndarray:
    """Segments of ``prob > threshold`` with the boundary (``<= threshold``) thinned to one pixel.

    Seeds are the 4-connected components of the cell pixels; a 4-connected watershed with watershed
    lines floods the boundary pixels from them, so each boundary pixel joins a neighbouring segment except
    a one-pixel line (label 0) where two segments meet. No cell pixel: everything is boundary (all 0).
    """
    cells = np.asarray(prob) > threshold
    seeds, count = ndi.label(cells, structure=_FOUR_CONNECTED)
    if count == 0:
        return seeds
    return watershed((~cells).astype(np.uint8), markers=seeds, connectivity=1, watershed_line=True)


def _as_cell_probability(prob: np.ndarray, proposal: str) -> np.ndarray:
    if proposal not in {"cell", "boundary"}:
        raise ConfigError(
            f"proposal must be 'cell' or 'boundary' (what the probability is of), got {proposal!r}."
        )
    prob = np.asarray(prob, dtype=np.float64)
    return 1.0 - prob if proposal == "boundary" else prob


def slice_statistics(
    prob: np.ndarray,
    gt: np.ndarray,
    thresholds: Sequence[float] = ISBI_THRESHOLDS,
    proposal: str = "cell",
    valid: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Per-threshold scores (T, 6; NaN rows if no foreground) and pixel TP, FP, FN (T, 3) of one slice.

    ``valid`` (optional boolean mask) restricts the pixel counts; the segment scores use the whole slice.
    """
    prob = _as_cell_probability(prob, proposal)
    gt = np.asarray(gt)
    if prob.shape != gt.shape or prob.ndim != 2:
        raise ValueError(
            f"probability {prob.shape} and ground truth {gt.shape} must be 2D slices of one shape."
        )
    gt_cells = gt > 0
    counted = np.ones(gt.shape, bool) if valid is None else np.asarray(valid, bool)
    gt_labels = ground_truth_segments(gt)
    scores = np.empty((len(thresholds), 6))
    pixels = np.empty((len(thresholds), 3), dtype=np.int64)
    for row, threshold in enumerate(thresholds):
        scores[row] = foreground_restricted_scores(gt_labels, thin_boundaries(prob, threshold))
        predicted = prob > threshold
        pixels[row] = [
            (predicted & gt_cells & counted).sum(),
            (predicted & ~gt_cells & counted).sum(),
            (~predicted & gt_cells & counted).sum(),
        ]
    return scores, pixels


def reduce_isbi(
    score_sums: np.ndarray, slices: int, pixel_counts: np.ndarray, thresholds: Sequence[float]
) -> dict[str, float]:
    """The reported scores from per-threshold sums of slice scores, the slice count and pixel counts.

    Separate from the per-slice work so that sums from several processes (DDP) give the exact result.
    """
    result: dict[str, float] = {}
    means = score_sums / slices if slices > 0 else np.full_like(score_sums, np.nan, dtype=np.float64)
    for family in ("v_rand", "v_info"):
        column = SCORE_NAMES.index(family)
        best = _first_max(means[:, column])
        for offset, suffix in enumerate(("", "_split", "_merge")):
            result[f"{family}{suffix}"] = (
                float(means[best, column + offset]) if best is not None else float("nan")
            )
        result[f"{family}_threshold"] = float(thresholds[best]) if best is not None else float("nan")
    tp, fp, fn = (pixel_counts[:, i].astype(np.float64) for i in range(3))
    with np.errstate(invalid="ignore", divide="ignore"):
        f_score = np.where(2 * tp + fp + fn > 0, 2 * tp / (2 * tp + fp + fn), np.nan)
    best = _first_max(f_score)
    result["pixel_error"] = 1.0 - float(f_score[best]) if best is not None else float("nan")
    return result


def _first_max(values: np.ndarray) -> int | None:
    """Index of the first maximum, NaN ignored (Fiji keeps a threshold only if it beats the best so far)."""
    if np.all(np.isnan(values)):
        return None
    return int(np.nanargmax(values))


def isbi_scores(
    prob_stack: np.ndarray,
    gt_stack: np.ndarray,
    thresholds: Sequence[float] = ISBI_THRESHOLDS,
    proposal: str = "cell",
) -> dict[str, float]:
    """The challenge's scores of a probability stack (S, H, W) against ground-truth labels (S, H, W).

    Keys: ``v_rand``, ``v_rand_split``, ``v_rand_merge``, ``v_rand_threshold``, the same for ``v_info``,
    and ``pixel_error``.
    """
    prob_stack, gt_stack = np.asarray(prob_stack), np.asarray(gt_stack)
    if prob_stack.ndim == 2:
        prob_stack, gt_stack = prob_stack[None], gt_stack[None]
    score_sums = np.zeros((len(thresholds), 6))
    pixel_counts = np.zeros((len(thresholds), 3), dtype=np.int64)
    slices = 0
    for prob, gt in zip(prob_stack, gt_stack, strict=True):
        scores, pixels = slice_statistics(prob, gt, thresholds, proposal)
        pixel_counts += pixels
        if not np.isnan(scores).all():
            score_sums += np.nan_to_num(scores)
            slices += 1
    return reduce_isbi(score_sums, slices, pixel_counts, thresholds)


class IsbiMetrics(Metric):
    """ISBI 2012 scores over an epoch: ``update(cell_prob, target)`` per batch of whole slices.

    ``cell_prob`` (B, H, W) is the probability of cell (softmax[:, 1] for the binary target), ``target``
    (B, H, W) the ground truth (> 0 = cell; ``ignore_index`` pixels count as membrane and are left out of
    the pixel counts). The state is per-threshold sums of per-slice scores, the slice count and pixel
    TP/FP/FN, all summed across DDP ranks, so the per-slice mean is exact. The work (a watershed per
    slice and threshold) runs on the CPU: about 0.4 s per 512 x 512 slice for the 11 thresholds.
    """

    full_state_update = False
    is_differentiable = False
    higher_is_better = True

    def __init__(
        self,
        thresholds: Sequence[float] = ISBI_THRESHOLDS,
        proposal: str = "cell",
        ignore_index: int | None = None,
    ) -> None:
        super().__init__()
        _as_cell_probability(np.zeros(1), proposal)  # validates
        self.thresholds = tuple(float(t) for t in thresholds)
        self.proposal = proposal
        self.ignore_index = ignore_index
        count = len(self.thresholds)
        self.add_state("score_sums", default=torch.zeros(count, 6, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("pixel_counts", default=torch.zeros(count, 3, dtype=torch.long), dist_reduce_fx="sum")
        self.add_state("slices", default=torch.zeros((), dtype=torch.long), dist_reduce_fx="sum")

    def update(self, cell_prob: torch.Tensor, target: torch.Tensor) -> None:
        probs = cell_prob.detach().float().cpu().numpy()
        labels = target.detach().cpu().numpy()
        for prob, gt in zip(probs, labels, strict=True):
            valid = None if self.ignore_index is None else gt != self.ignore_index
            if valid is not None:
                gt = np.where(valid, gt, 0)
            scores, pixels = slice_statistics(prob, gt, self.thresholds, self.proposal, valid)
            self.pixel_counts += torch.as_tensor(pixels, device=self.pixel_counts.device)
            if not np.isnan(scores).all():
                self.score_sums += torch.as_tensor(np.nan_to_num(scores), device=self.score_sums.device)
                self.slices += 1

    def compute(self) -> dict[str, float]:
        return reduce_isbi(
            self.score_sums.cpu().numpy(), int(self.slices), self.pixel_counts.cpu().numpy(), self.thresholds
        )
