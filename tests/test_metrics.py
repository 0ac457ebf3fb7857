"""Epoch metrics from the confusion matrix, checked against hand-counted pixels."""

from __future__ import annotations

import math

import numpy as np
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


def test_per_class_scores_precision_and_recall():
    scores = scores_from_confusion(confusion_matrix(PRED, TARGET, 2), ("background", "cell"))
    assert scores["dice_cell"] == pytest.approx(10 / 14) and scores["iou_cell"] == pytest.approx(5 / 9)
    assert scores["dice_background"] == pytest.approx(14 / 18) and scores["iou_background"] == pytest.approx(
        7 / 11
    )
    assert scores["precision"] == pytest.approx(5 / 8) and scores["recall"] == pytest.approx(5 / 6)


def test_empty_class_conventions():
    empty = torch.zeros(4, 4, dtype=torch.long)
    nothing = scores_from_confusion(confusion_matrix(empty, empty, 2), ("background", "cell"))
    assert nothing["precision"] == 1.0 and nothing["recall"] == 1.0 and math.isnan(nothing["dice_cell"])
    missed = scores_from_confusion(confusion_matrix(empty, TARGET, 2), ("background", "cell"))
    assert missed["precision"] == 0.0 and missed["recall"] == 0.0 and missed["dice"] == 0.0
    false_alarm = scores_from_confusion(confusion_matrix(PRED, empty, 2), ("background", "cell"))
    assert false_alarm["recall"] == 0.0 and math.isnan(false_alarm["acc_cell"])


# --- DDP: two CPU processes (gloo) each update with part of the images; compute() must equal one process.


def _metric_inputs(count: int = 5) -> list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    """(class map, cell probability, true instances) per image: blobs with noise, some touching."""
    from scipy import ndimage as ndi

    generator = np.random.default_rng(0)
    images = []
    for _ in range(count):
        seeds = generator.random((32, 32)) > 0.985
        true = ndi.label(ndi.binary_dilation(seeds, iterations=3))[0]
        prob = np.clip((true > 0) * 0.8 + generator.normal(0, 0.25, true.shape), 0, 1)
        images.append((torch.as_tensor(prob > 0.5).long(), torch.as_tensor(prob), torch.as_tensor(true)))
    return images


def _run_metrics(images) -> dict[str, float]:
    from cellseg.metrics import InstanceMetrics, IsbiMetrics

    pixel, isbi, instance = SegmentationMetrics(("background", "cell")), IsbiMetrics(), InstanceMetrics()
    for classes, prob, true in images:
        pixel.update(classes[None], (true > 0).long()[None])
        isbi.update(prob[None], (true > 0).long()[None])
        instance.update(classes[None], true[None])
    return {**pixel.compute(), **isbi.compute(), **instance.compute()}


def _ddp_worker(rank: int, world_size: int, port: int, out_dir: str) -> None:
    import json
    import os

    import torch.distributed as dist

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world_size)
    images = _metric_inputs()
    share = images[:3] if rank == 0 else images[3:]  # 5 images split unevenly, 3 + 2
    result = _run_metrics(share)
    with open(os.path.join(out_dir, f"rank{rank}.json"), "w") as file:
        json.dump(result, file)
    dist.destroy_process_group()


def test_ddp_two_processes_give_the_single_process_metrics(tmp_path):
    import json
    import socket

    import torch.multiprocessing as mp

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    # spawn, not fork: forking a process whose torch thread pools already run can deadlock.
    mp.spawn(_ddp_worker, args=(2, port, str(tmp_path)), nprocs=2, join=True)
    single = _run_metrics(_metric_inputs())
    assert 0 < single["v_rand"] < 1 and 0 < single["ap50"] < 1  # a non-trivial case
    for rank in range(2):
        ranked = json.loads((tmp_path / f"rank{rank}.json").read_text())
        assert ranked.keys() == single.keys()
        for key, value in single.items():
            assert ranked[key] == pytest.approx(value, abs=1e-12, nan_ok=True), key


def test_stage_metrics_merged_per_image_equal_the_pooled_update():
    """python -m cellseg.evaluate pools the split by merging per-image metrics: the same as updating once."""
    from cellseg.stage_metrics import StageMetrics

    generator = torch.Generator().manual_seed(0)
    probabilities = torch.rand(3, 2, 24, 24, generator=generator).softmax(dim=1)
    masks = (torch.rand(3, 24, 24, generator=generator) > 0.5).long()
    names, extra = ("background", "cell"), ("isbi", "instances")
    pooled, merged = StageMetrics(names, -100, extra), StageMetrics(names, -100, extra)
    pooled.update_from_probabilities(probabilities, {"mask": masks, "instances": masks})
    for i in range(3):
        single = StageMetrics(names, -100, extra)
        single.update_from_probabilities(
            probabilities[i : i + 1], {"mask": masks[i : i + 1], "instances": masks[i : i + 1]}
        )
        merged.merge(single)
    assert merged.compute() == pytest.approx(pooled.compute(), nan_ok=True)
    assert "loss" not in merged.compute()
