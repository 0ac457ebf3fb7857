"""Epoch metrics from the confusion matrix, checked against hand-counted pixels."""

from __future__ import annotations

import math

import pytest
import torch

from cellseg.metrics import SegmentationMetrics, confusion_matrix, scores_from_confusion

# 4x4 target/prediction: 6 true cell pixels, 7 predicted, 5 overlap.
TARGET = torch.tensor([[0, 0, 1, 1], [0, 0, 1, 1], [0, 0, 1, 1], [0, 0, 0, 0]])
PRED = torch.tensor([[0, 1, 1, 1], [0, 0, 1, 1], [0, 1, 0, 1], [0, 0, 0, 1]])


def test_confusion_matrix_counts_pixels():
    cm = confusion_matrix(PRED, TARGET, num_classes=2)
    # rows: true background (10 px: 7 right, 3 wrong), true cell (6 px: 1 missed, 5 found)
    assert cm.tolist() == [[7, 3], [1, 5]]


def test_scores_match_hand_computation():
    scores = scores_from_confusion(confusion_matrix(PRED, TARGET, 2), ("background", "cell"))
    assert scores["dice"] == pytest.approx(2 * 5 / (6 + 8))
    assert scores["iou"] == pytest.approx(5 / 9)
    assert scores["pixel_acc"] == pytest.approx(12 / 16)
    assert scores["acc_background"] == pytest.approx(7 / 10)
    assert scores["acc_cell"] == pytest.approx(5 / 6)


def test_ignore_index_pixels_do_not_count():
    target = TARGET.clone()
    target[0, 1] = -100  # the false positive at (0, 1) becomes unannotated
    cm = confusion_matrix(PRED, target, 2, ignore_index=-100)
    assert cm.sum() == 15 and cm[0, 1] == 2


def test_epoch_metric_is_pooled_over_pixels_not_averaged_over_batches():
    metric = SegmentationMetrics(("background", "cell"))
    metric.update(PRED[None], TARGET[None])
    empty = torch.zeros(1, 4, 4, dtype=torch.long)
    metric.update(empty, empty)  # an all-background image, predicted right
    scores = metric.compute()
    assert scores["dice"] == pytest.approx(10 / 14)  # unchanged by the empty image
    assert scores["pixel_acc"] == pytest.approx(28 / 32)


def test_no_foreground_anywhere_scores_one_and_missing_class_accuracy_is_nan():
    empty = torch.zeros(4, 4, dtype=torch.long)
    scores = scores_from_confusion(confusion_matrix(empty, empty, 2), ("background", "cell"))
    assert scores["dice"] == 1.0 and scores["iou"] == 1.0
    assert math.isnan(scores["acc_cell"])


def test_multiclass_dice_averages_foreground_classes():
    target = torch.tensor([0, 1, 1, 2, 2, 2])
    pred = torch.tensor([0, 1, 2, 2, 2, 0])
    scores = scores_from_confusion(confusion_matrix(pred, target, 3), ("bg", "interior", "border"))
    dice_interior = 2 * 1 / (2 + 1)
    dice_border = 2 * 2 / (3 + 3)
    assert scores["dice"] == pytest.approx((dice_interior + dice_border) / 2)
    assert scores["acc_border"] == pytest.approx(2 / 3)
