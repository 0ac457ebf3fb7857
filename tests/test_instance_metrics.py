"""Instance matching metrics, checked against hand-counted matches."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cellseg.metrics.instances import (
    InstanceMetrics,
    instance_scores,
    instances_from_boundary_classes,
    instances_from_classes,
    iou_matrix,
    match_counts,
)


def hand_case() -> tuple[np.ndarray, np.ndarray]:
    """True: cells 1 and 2 (10 px each). Predicted: 7 (IoU 0.8 with 1), 8 (IoU 4/11 with 2), 9 (no cell)."""
    true = np.zeros((6, 20), np.int64)
    true[0, 0:10] = 1
    true[2, 0:10] = 2
    pred = np.zeros_like(true)
    pred[0, 0:8] = 7  # 8 of cell 1: IoU 8/10
    pred[2, 6:11] = 8  # 5 px: 4 inside cell 2, 1 outside -> IoU 4 / 11
    pred[4, 0:5] = 9
    return true, pred


def test_iou_matrix_and_counts_by_hand():
    true, pred = hand_case()
    iou = iou_matrix(true, pred)
    np.testing.assert_allclose(iou, [[0.8, 0, 0], [0, 4 / 11, 0]])
    counts = match_counts(true, pred, thresholds=[0.3, 0.5, 0.85])
    np.testing.assert_allclose(counts[0], [2, 1, 0, 0.8 + 4 / 11])
    np.testing.assert_allclose(counts[1], [1, 2, 1, 0.8])
    np.testing.assert_allclose(counts[2], [0, 3, 2, 0.0])


def test_scores_by_hand():
    true, pred = hand_case()
    scores = instance_scores([true], [pred])
    assert scores["ap50"] == pytest.approx(1 / 4)  # TP / (TP + FP + FN) = 1 / (1 + 2 + 1)
    assert scores["ap80"] == pytest.approx(1 / 4) and scores["ap85"] == 0.0
    assert scores["inst_precision"] == pytest.approx(1 / 3)
    assert scores["inst_recall"] == pytest.approx(1 / 2)
    assert scores["inst_f1"] == pytest.approx(2 / (2 + 2 + 1))
    assert scores["pq"] == pytest.approx(0.8 / (1 + 2 / 2 + 1 / 2))
    assert scores["sq"] == pytest.approx(0.8)
    assert scores["map"] == pytest.approx(np.mean([1 / 4] * 7 + [0] * 3))
    assert sorted(k for k in scores if k.startswith("ap")) == sorted(f"ap{t}" for t in range(50, 100, 5))


def test_a_match_needs_iou_of_at_least_the_threshold():
    true = np.zeros((1, 4), np.int64)
    true[0, :2] = 1
    pred = np.zeros_like(true)
    pred[0, 1:3] = 1  # IoU exactly 1/3
    assert match_counts(true, pred, [1 / 3])[0, 0] == 1
    pred[0, 1:4] = 1  # IoU 1/4
    assert match_counts(true, pred, [1 / 3])[0, 0] == 0


def test_empty_conventions():
    empty = np.zeros((4, 4), np.int64)
    cell = empty.copy()
    cell[1:3, 1:3] = 1
    nothing = instance_scores([empty], [empty])
    assert nothing["ap50"] == 1.0 and nothing["inst_f1"] == 1.0 and nothing["pq"] == 1.0
    false_alarm = instance_scores([empty], [cell])
    assert (
        false_alarm["ap50"] == 0.0
        and false_alarm["inst_precision"] == 0.0
        and false_alarm["inst_recall"] == 0.0
    )
    missed = instance_scores([cell], [empty])
    assert missed["inst_recall"] == 0.0 and missed["pq"] == 0.0
    # An empty image adds nothing to an epoch's counts.
    assert instance_scores([cell, empty], [cell, empty]) == instance_scores([cell], [cell])


def test_instances_from_class_maps():
    classes = np.array([[1, 1, 0, 1], [1, 0, 0, 1], [0, 0, 1, 0]])
    assert instances_from_classes(classes).max() == 3  # 4-connected: the diagonal pixel stands alone
    assert instances_from_classes(classes, connectivity=2).max() == 2
    boundary_target = np.array([[1, 1, 2, 1, 1], [1, 1, 2, 1, 1], [2, 2, 2, 2, 2], [0, 0, 0, 0, 0]])
    instances = instances_from_boundary_classes(boundary_target)
    assert sorted(np.unique(instances).tolist()) == [0, 1, 2]
    assert (instances[2] > 0).all() and (instances[3] == 0).all()  # border pixels join a cell


def test_stateful_metric_equals_the_functional_result():
    true, pred = hand_case()
    metric = InstanceMetrics(predictions="instances")
    metric.update(torch.as_tensor(pred)[None], torch.as_tensor(true)[None])
    assert metric.compute() == instance_scores([true], [pred])
    classes = InstanceMetrics(predictions="components")
    classes.update(torch.as_tensor(pred > 0).long()[None], torch.as_tensor(true)[None])
    assert classes.compute()["ap50"] == pytest.approx(1 / 4)
