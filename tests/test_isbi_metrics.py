"""ISBI 2012 scores: the challenge's test vector, a plainly written second implementation, thinning."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import ndimage as ndi
from skimage.metrics import adapted_rand_error

from cellseg.metrics.isbi import (
    ISBI_THRESHOLDS,
    foreground_restricted_scores,
    isbi_scores,
    thin_boundaries,
)


def isbi_vector_case() -> tuple[np.ndarray, np.ndarray]:
    """The 64 x 64 case of ../shared/reference/isbi-metric-test-vector.md."""
    gt = np.zeros((64, 64), np.int64)
    gt[0:31, 0:31], gt[0:31, 32:64], gt[32:64, 0:31], gt[32:64, 32:64] = 1, 2, 3, 4
    membrane = np.zeros((64, 64), bool)
    membrane[30:33, :] = True
    membrane[:, 30:33] = True
    membrane[0:30, 30:33] = False  # a missing piece of membrane: cells 1 and 2 merge
    return gt, ndi.label(~membrane)[0]


def test_scoring_step_reproduces_the_isbi_test_vector():
    gt, proposal = isbi_vector_case()
    scores = foreground_restricted_scores(gt, proposal)
    assert round(scores.v_rand, 4) == 0.7688
    assert round(scores.v_rand_merge, 4) == 0.6669  # "precision"
    assert round(scores.v_rand_split, 4) == 0.9073  # "recall"
    assert round(scores.v_info, 4) == 0.7502
    # scikit-image differs (pairs without self-pairs); with boundary pixels as singletons it is close.
    singletons = np.where(
        proposal == 0, proposal.max() + 1 + np.arange(proposal.size).reshape(64, 64), proposal
    )
    assert round(1 - adapted_rand_error(gt, singletons)[0], 4) == 0.7686


def plain_scores(gt: np.ndarray, proposal: np.ndarray) -> tuple[float, float, float, float, float, float]:
    """A second, plainly written implementation: a dict contingency table and loops, as the formulas read."""
    table: dict[tuple[int, int], int] = {}
    n = 0
    singletons = 0
    for g, s in zip(gt.ravel().tolist(), proposal.ravel().tolist(), strict=True):
        if g == 0:
            continue  # ground-truth background is pruned
        n += 1
        if s == 0:
            singletons += 1  # each boundary pixel is its own proposal segment
        else:
            table[(g, s)] = table.get((g, s), 0) + 1
    gt_sizes: dict[int, int] = {}
    proposal_sizes: dict[int, int] = {}
    for g, s in zip(gt.ravel().tolist(), proposal.ravel().tolist(), strict=True):
        if g != 0:
            gt_sizes[g] = gt_sizes.get(g, 0) + 1
            if s != 0:
                proposal_sizes[s] = proposal_sizes.get(s, 0) + 1
    # Rand: pairs of pixels (with self-pairs, N^2) together in both, in the proposal, in the ground truth.
    both = sum(c * c for c in table.values()) + singletons
    in_proposal = sum(c * c for c in proposal_sizes.values()) + singletons
    in_gt = sum(c * c for c in gt_sizes.values())
    rand_merge, rand_split = both / in_proposal, both / in_gt
    # Information, natural log; probabilities are counts / n; a singleton has probability 1/n.
    h_gt = 0.0
    for c in gt_sizes.values():
        h_gt -= c / n * math.log(c / n)
    h_proposal = singletons * (1 / n) * math.log(n)
    for c in proposal_sizes.values():
        h_proposal -= c / n * math.log(c / n)
    h_joint = singletons * (1 / n) * math.log(n)
    for c in table.values():
        h_joint -= c / n * math.log(c / n)
    mutual = h_gt + h_proposal - h_joint
    info_merge, info_split = mutual / h_gt, mutual / h_proposal
    return (
        2 * rand_merge * rand_split / (rand_merge + rand_split),
        rand_split,
        rand_merge,
        2 * info_merge * info_split / (info_merge + info_split),
        info_split,
        info_merge,
    )


@pytest.mark.parametrize("seed", range(6))
def test_agrees_with_a_plainly_written_implementation_on_random_label_maps(seed):
    rng = np.random.default_rng(seed)
    shape = (24, 20)
    gt = rng.integers(0, 5, shape)  # label 0 = ground-truth background
    proposal = rng.integers(0, 7, shape)  # label 0 = boundary pixels (singletons)
    if seed % 2:  # blocky maps too, so that segments overlap a lot
        gt = np.kron(rng.integers(0, 4, (6, 5)), np.ones((4, 4), np.int64))
        proposal = np.kron(rng.integers(0, 5, (12, 10)), np.ones((2, 2), np.int64))
    np.testing.assert_allclose(
        foreground_restricted_scores(gt, proposal), plain_scores(gt, proposal), rtol=1e-12
    )


def test_thinning_leaves_one_pixel_lines_between_4_connected_cells():
    prob = np.ones((7, 11))
    prob[:, 3:7] = 0.0  # a 4-pixel membrane
    labels = thin_boundaries(prob, 0.5)
    assert (labels == 0).sum(axis=1).tolist() == [1] * 7  # one boundary pixel per row
    assert len(np.unique(labels[labels > 0])) == 2
    assert (thin_boundaries(np.zeros((4, 4)), 0.5) == 0).all()
    diagonal = np.array([[1.0, 0.0], [0.0, 1.0]])  # diagonal neighbours are not 4-connected
    assert len(np.unique(thin_boundaries(diagonal, 0.5))) >= 2


def test_perfect_prediction_scores_one_and_thresholds_follow_fiji():
    assert len(ISBI_THRESHOLDS) == 11 and ISBI_THRESHOLDS[0] == 0.0 and ISBI_THRESHOLDS[-1] < 1.0
    gt, _ = isbi_vector_case()
    scores = isbi_scores((gt > 0).astype(float)[None], (gt > 0)[None] * 255)
    assert scores["v_rand"] == pytest.approx(1.0) and scores["v_info"] == pytest.approx(1.0)
    assert scores["pixel_error"] == 0.0
    flipped = isbi_scores(1.0 - (gt > 0)[None], (gt > 0)[None] * 255, proposal="boundary")
    assert flipped == scores


def test_stack_scores_average_slices_and_take_the_best_threshold():
    gt, proposal = isbi_vector_case()
    prob = (proposal > 0).astype(float)  # the merged proposal as a binary map
    perfect = (gt > 0).astype(float)
    merged = isbi_scores(prob[None], (gt > 0)[None])
    both = isbi_scores(np.stack([prob, perfect]), np.stack([gt > 0, gt > 0]))
    assert both["v_rand"] == pytest.approx((merged["v_rand"] + 1.0) / 2)
    # A slice without ground-truth foreground is left out of the average (Fiji would give NaN).
    with_empty = isbi_scores(np.stack([prob, perfect, prob]), np.stack([gt > 0, gt > 0, np.zeros_like(gt)]))
    assert with_empty["v_rand"] == pytest.approx(both["v_rand"])
    # Pixel error pools pixels over the stack: 1 - max_t F1 of (proposal > t) versus ground truth.
    tp = ((prob > 0) & (gt > 0)).sum()
    fp, fn = ((prob > 0) & (gt == 0)).sum(), ((prob == 0) & (gt > 0)).sum()
    assert merged["pixel_error"] == pytest.approx(1 - 2 * tp / (2 * tp + fp + fn))
