"""Cellpose flows: they point to each cell's centre, decode back into the same instances (touching and
non-convex cells included), bad or small cells are dropped, decoding is chunked and device-independent,
and flips / transposes of the labels map to the same transforms of the flows."""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch

from cellseg.instances.flows import (
    flows_from_instances,
    follow_flows,
    masks_from_flows,
    transform_flows,
)
from cellseg.metrics.instances import instance_scores


def disk(shape: tuple[int, int], centre: tuple[float, float], radius: float) -> np.ndarray:
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    return (yy - centre[0]) ** 2 + (xx - centre[1]) ** 2 <= radius**2


def two_touching_disks() -> np.ndarray:
    """Two disks of radius 12 whose centres are 20 px apart, split along the perpendicular bisector."""
    yy, xx = np.mgrid[:40, :64]
    first, second = disk((40, 64), (20, 20), 12), disk((40, 64), (20, 40), 12)
    nearer_first = (yy - 20) ** 2 + (xx - 20) ** 2 <= (yy - 20) ** 2 + (xx - 40) ** 2
    labels = np.zeros((40, 64), np.int64)
    labels[second] = 2
    labels[first & (nearer_first | ~second)] = 1
    return labels


def grid_of_squares() -> np.ndarray:
    """A 3 x 3 grid of touching 10 x 10 squares with ids 1..9."""
    labels = np.zeros((40, 40), np.int64)
    yy, xx = np.mgrid[:30, :30]
    labels[5:35, 5:35] = 1 + (yy // 10) * 3 + xx // 10
    return labels


def l_shape_with_neighbour() -> np.ndarray:
    """A non-convex L-shaped cell (1) and a square (2) filling its concave corner, touching both arms."""
    labels = np.zeros((44, 44), np.int64)
    labels[4:40, 4:12] = 1  # vertical arm
    labels[32:40, 4:40] = 1  # horizontal arm
    labels[4:32, 12:40] = 2
    return labels


def asymmetric_cells() -> np.ndarray:
    """Cells of different shapes at asymmetric places in a non-square image, each with a unique centre
    (the cell pixel nearest to its median is not tied, so the centre itself transforms with the image)."""
    labels = np.zeros((40, 53), np.int64)
    labels[3:10, 4:15] = 1  # 7 x 11 rectangle
    labels[disk(labels.shape, (26, 33), 7)] = 2
    labels[14:33, 3:8] = 3  # L-shape
    labels[28:33, 8:20] = 3
    labels[12:25, 40:51] = 4  # rectangle touching the disk
    labels[(labels == 4) & disk(labels.shape, (26, 33), 7)] = 2
    labels[disk(labels.shape, (7, 30), 4) & (labels == 0)] = 7  # non-consecutive id
    return labels


def test_flows_of_a_disk_point_to_its_centre_with_unit_length():
    labels = disk((41, 41), (20, 20), 12).astype(np.int64)
    flows = flows_from_instances(labels)
    assert flows.shape == (2, 41, 41) and flows.dtype == np.float32
    ys, xs = np.nonzero(labels)
    to_centre = np.stack([20 - ys, 20 - xs]).astype(float)
    distance = np.hypot(*to_centre)
    far = distance > 2
    cosine = (flows[:, ys, xs] * to_centre)[:, far].sum(0) / distance[far]
    assert cosine.min() > 0.9
    norm = np.hypot(*flows[:, ys, xs])
    np.testing.assert_allclose(norm[distance > 0], 1.0, atol=1e-5)
    assert norm[distance == 0].item() == 0.0  # the centre of a symmetric cell has no direction
    assert not flows[:, labels == 0].any()  # background exactly 0


def test_heat_stays_in_each_cell_and_ids_and_negative_values_do_not_matter():
    labels = grid_of_squares()
    flows = flows_from_instances(labels, niter=60)
    for cell in (1, 5, 9):  # a corner, the middle and another corner cell of the touching grid
        alone = flows_from_instances(np.where(labels == cell, cell, 0), niter=60)
        np.testing.assert_array_equal(flows[:, labels == cell], alone[:, labels == cell])
    renamed = np.where(labels > 0, labels * 7 + 100, -3)  # other ids, negative background
    np.testing.assert_array_equal(flows_from_instances(renamed, niter=60), flows)


def test_non_convex_cell_flows_lead_to_a_centre_inside_it():
    labels = l_shape_with_neighbour()
    flows = flows_from_instances(labels)
    ys, xs = np.nonzero(labels == 1)
    ends = follow_flows(flows * (labels == 1), np.stack([ys, xs], 1).astype(np.float32), niter=200)
    ends = np.round(ends).astype(int)
    assert (labels[ends[:, 0], ends[:, 1]] == 1).all()  # the sink is inside the L, not in its corner
    assert len(np.unique(ends, axis=0)) <= 4  # and all pixels gather there


@pytest.mark.parametrize("make", [two_touching_disks, grid_of_squares, l_shape_with_neighbour])
def test_instances_are_recovered_from_their_flows(make):
    labels = make()
    masks = masks_from_flows(flows_from_instances(labels), labels > 0)
    assert masks.dtype == np.int32 and masks.shape == labels.shape
    scores = instance_scores([labels], [masks])
    assert scores["ap50"] == 1.0
    assert scores["sq"] > 0.95
    assert masks.max() == len(np.unique(labels)) - 1  # ids 1..n


def test_noisy_flows_still_give_the_instances():
    labels = grid_of_squares()
    flows = flows_from_instances(labels)
    noisy = flows + np.random.default_rng(0).normal(0, 0.3, flows.shape).astype(np.float32) * (labels > 0)
    noisy /= np.maximum(np.hypot(*noisy), 1e-6)  # a prediction: roughly unit length, directions off
    scores = instance_scores([labels], [masks_from_flows(noisy, labels > 0)])
    assert scores["ap50"] == 1.0 and scores["sq"] > 0.95


def three_squares() -> np.ndarray:
    labels = np.zeros((32, 60), np.int64)
    labels[10:24, 4:18] = 1
    labels[10:24, 18:32] = 2  # touches cell 1
    labels[10:24, 40:54] = 3
    return labels


def test_flow_threshold_drops_a_cell_whose_flows_disagree():
    labels = three_squares()
    flows = flows_from_instances(labels)
    # Cell 2's flows lead every pixel to one wrong sink, its bottom-right corner pixel: the cell is
    # found, but its flows are not those of the mask.
    ys, xs = np.nonzero(labels == 2)
    wrong = np.stack([23 - ys, 31 - xs]).astype(np.float32)
    flows[:, ys, xs] = wrong / np.maximum(np.hypot(*wrong), 1e-6)
    kept = masks_from_flows(flows, labels > 0, flow_threshold=None)
    assert kept.max() == 3
    checked = masks_from_flows(flows, labels > 0, flow_threshold=0.4)
    expected = np.where(labels == 2, 0, labels)
    assert instance_scores([expected], [checked])["ap50"] == 1.0
    assert not checked[labels == 2].any()


def test_random_flows_give_no_cell_and_leave_the_others():
    labels = three_squares()
    flows = flows_from_instances(labels)
    rng = np.random.default_rng(0)
    angles = rng.uniform(0, 2 * np.pi, int((labels == 2).sum()))
    flows[:, labels == 2] = np.stack([np.sin(angles), np.cos(angles)])
    masks = masks_from_flows(flows, labels > 0)
    expected = np.where(labels == 2, 0, labels)
    assert instance_scores([expected], [masks])["ap50"] == 1.0
    assert masks.max() == 2


def test_min_size_and_prob_threshold():
    labels = np.zeros((40, 40), np.int64)
    labels[disk((40, 40), (20, 12), 8)] = 1  # 197 px
    labels[18:23, 30:35] = 2  # 25 px
    flows = flows_from_instances(labels)
    assert masks_from_flows(flows, labels > 0, min_size=15).max() == 2
    only_large = masks_from_flows(flows, labels > 0, min_size=30)
    np.testing.assert_array_equal(only_large, labels == 1)

    probability = np.where(labels == 1, 0.45, np.where(labels == 2, 0.9, 0.1))
    np.testing.assert_array_equal(masks_from_flows(flows, probability, prob_threshold=0.5), labels == 2)
    assert masks_from_flows(flows, probability, prob_threshold=0.4).max() == 2


def test_empty_foreground_gives_no_cells():
    flows = flows_from_instances(grid_of_squares())
    masks = masks_from_flows(flows, np.zeros((40, 40)))
    assert masks.dtype == np.int32 and masks.shape == (40, 40) and not masks.any()
    assert not flows_from_instances(np.zeros((8, 9), np.int64)).any()


def test_euler_steps_follow_a_constant_field_and_stop_at_the_border():
    flows = np.zeros((2, 10, 12), np.float32)
    flows[1] = 1.0  # dx = 1 everywhere
    points = np.array([[3.0, 2.5], [0.0, 0.0]], np.float32)
    np.testing.assert_allclose(follow_flows(flows, points, niter=4), [[3, 6.5], [0, 4]], atol=1e-5)
    np.testing.assert_allclose(follow_flows(flows, points, niter=50), [[3, 11], [0, 11]], atol=1e-5)
    as_tensor = follow_flows(torch.from_numpy(flows), torch.from_numpy(points), niter=4)
    assert isinstance(as_tensor, torch.Tensor)


def test_chunked_following_matches_one_chunk():
    labels = two_touching_disks()
    flows = flows_from_instances(labels)
    points = np.argwhere(labels > 0).astype(np.float32)
    whole = follow_flows(flows, points, niter=100)
    chunked = follow_flows(flows, points, niter=100, chunk_size=7)  # many chunks, a ragged last one
    np.testing.assert_allclose(chunked, whole, atol=1e-5)
    np.testing.assert_array_equal(
        masks_from_flows(flows, labels > 0, chunk_size=13), masks_from_flows(flows, labels > 0)
    )


FLAGS = [(fy, fx, t) for fy in (False, True) for fx in (False, True) for t in (False, True)]


def transform_labels(labels: np.ndarray, flip_y: bool, flip_x: bool, transpose: bool) -> np.ndarray:
    out = labels[::-1] if flip_y else labels
    out = out[:, ::-1] if flip_x else out
    return out.T if transpose else out


@pytest.mark.parametrize(("flip_y", "flip_x", "transpose"), FLAGS)
def test_flows_transform_with_their_labels(flip_y, flip_x, transpose):
    labels = asymmetric_cells()
    flows = flows_from_instances(labels)
    expected = flows_from_instances(np.ascontiguousarray(transform_labels(labels, flip_y, flip_x, transpose)))
    mapped = transform_flows(flows, flip_y, flip_x, transpose)
    np.testing.assert_allclose(mapped, expected, atol=1e-6)  # bitwise equal in practice (module docstring)
    np.testing.assert_allclose(transform_flows(mapped, flip_y, flip_x, transpose, inverse=True), flows)
    batch = torch.from_numpy(np.stack([flows, -flows]))  # (B, 2, H, W) tensors give the same
    mapped_batch = transform_flows(batch, flip_y, flip_x, transpose)
    np.testing.assert_allclose(mapped_batch[0].numpy(), mapped, atol=1e-7)
    np.testing.assert_allclose(mapped_batch[1].numpy(), -mapped, atol=1e-7)


def test_rotations_are_a_flip_then_a_transpose():
    labels = asymmetric_cells()
    flows = flows_from_instances(labels)
    rot90 = flows_from_instances(np.ascontiguousarray(np.rot90(labels)))
    np.testing.assert_allclose(transform_flows(flows, flip_x=True, transpose=True), rot90, atol=1e-6)
    rot180 = flows_from_instances(np.ascontiguousarray(np.rot90(labels, 2)))
    np.testing.assert_allclose(transform_flows(flows, flip_y=True, flip_x=True), rot180, atol=1e-6)
    rot270 = flows_from_instances(np.ascontiguousarray(np.rot90(labels, 3)))
    np.testing.assert_allclose(transform_flows(flows, flip_y=True, transpose=True), rot270, atol=1e-6)


def test_arguments_are_validated():
    flows = np.zeros((2, 10, 12), np.float32)
    with pytest.raises(ValueError, match=re.escape("(10, 11)")):
        masks_from_flows(flows, np.zeros((10, 11)))
    with pytest.raises(ValueError, match=re.escape("(3, 10, 12)")):
        masks_from_flows(np.zeros((3, 10, 12)), np.zeros((10, 12)))
    with pytest.raises(ValueError, match="prob_threshold"):
        masks_from_flows(flows, np.zeros((10, 12)), prob_threshold=1.5)
    with pytest.raises(ValueError, match="flow_threshold"):
        masks_from_flows(flows, np.zeros((10, 12)), flow_threshold=float("nan"))
    with pytest.raises(ValueError, match="min_size"):
        masks_from_flows(flows, np.zeros((10, 12)), min_size=-1)
    with pytest.raises(ValueError, match="niter"):
        masks_from_flows(flows, np.zeros((10, 12)), niter=0)
    with pytest.raises(ValueError, match="chunk_size"):
        follow_flows(flows, np.zeros((1, 2)), chunk_size=0)
    with pytest.raises(ValueError, match="NaN or infinite"):
        masks_from_flows(np.full((2, 10, 12), np.nan), np.ones((10, 12)))
    with pytest.raises(ValueError, match=re.escape("(4, 5, 6)")):
        flows_from_instances(np.zeros((4, 5, 6), np.int64))
    with pytest.raises(ValueError, match="integer"):
        flows_from_instances(np.full((4, 5), 0.5))


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_decoding_on_cuda_matches_the_cpu():
    labels = grid_of_squares()
    flows = torch.from_numpy(flows_from_instances(labels))
    probability = torch.from_numpy((labels > 0).astype(np.float32))
    points = torch.from_numpy(np.argwhere(labels > 0).astype(np.float32))
    on_gpu = follow_flows(flows.cuda(), points.cuda(), niter=100)
    assert on_gpu.device.type == "cuda"
    np.testing.assert_allclose(on_gpu.cpu().numpy(), follow_flows(flows, points, niter=100), atol=1e-3)
    cpu = masks_from_flows(flows, probability)
    np.testing.assert_array_equal(masks_from_flows(flows.cuda(), probability.cuda()), cpu)
    np.testing.assert_array_equal(masks_from_flows(flows, probability, device="cuda"), cpu)
    assert instance_scores([labels], [cpu])["ap50"] == 1.0
