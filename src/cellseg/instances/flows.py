"""Cellpose's flow representation of cells and its decoding into instances (Stringer et al., "Cellpose: a
generalist algorithm for cellular segmentation", Nature Methods 18, 100-106, 2021), written from the
paper's description with numpy, scipy and torch (no cellpose code or dependency).

Representation (:func:`flows_from_instances`). Each cell is the domain of a heat-diffusion problem: heat
is injected at the cell's centre (the cell pixel nearest to the median of its pixel coordinates, so the
centre lies inside non-convex cells) and spreads by repeated 3x3 averaging in which pixels outside the cell
count as 0, i.e. the cell border is an absorbing (zero) boundary and heat never crosses into a touching
cell. After ``niter`` steps the heat T is compressed to log(1 + T) and its spatial gradient, normalised to
unit length, is the cell's flow: a field of unit vectors (dy, dx) that leads from every cell pixel to the
cell's centre. Background flows are exactly 0. The network regresses these two maps next to the cell
probability; the field is smooth inside a cell and flips direction across the border between two touching
cells, which is what lets the decoding split them.

Decoding (:func:`masks_from_flows`). Every pixel with p(cell) > ``prob_threshold`` is moved along the
(bilinearly interpolated) predicted flows for ``niter`` Euler steps (:func:`follow_flows`). Pixels of one
cell gather in the same sink. Sinks are found in the 2D histogram of the rounded end points: seeds are local
maxima (5x5) holding more than :data:`SEED_MIN_COUNT` end points, grown for :data:`GROW_ITERATIONS` steps
over neighbouring bins holding more than :data:`GROW_MIN_COUNT`; a pixel takes the label of the bin it ended
in. Cells whose flows, recomputed from the found mask, differ from the predicted flows (mean squared error
over the cell, summed over both components) by more than ``flow_threshold`` are dropped, as are cells under
``min_size`` pixels; holes are filled and ids made consecutive.

:func:`transform_flows` maps a flow field through the flips and transpose of its image (test-time
augmentation, augmentation of precomputed targets).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage as ndi

from cellseg.instances import without_small_cells

#: A histogram bin must hold more than this many end points to seed a cell (Cellpose's value). Cells
#: whose pixels cannot pile more than this into one bin (fewer than ~11 px) are never found.
SEED_MIN_COUNT = 10
#: Bins holding more than this many end points join the seed they touch while it grows.
GROW_MIN_COUNT = 2
#: Growth steps (one 3x3 dilation each) of every seed in the histogram.
GROW_ITERATIONS = 5
#: Side of the maximum filter that finds local maxima of the histogram.
SEED_WINDOW = 5

# Neighbour offsets (dy, dx), ordered in mirror pairs: up/down, left/right, and the two diagonals. The
# diffusion sums them in the tree ((u + d) + (l + r)) + ((ul + dr) + (ur + dl)); every flip or transpose
# of the image only swaps the children of some node of that tree, and floating-point addition is
# commutative, so the flows of a flipped/transposed label image are bitwise the flipped/transposed flows
# (exact zeros at the centre of symmetric cells rather than rounding noise blown up to unit length).
_NEIGHBOURS = ((-1, 0), (1, 0), (0, -1), (0, 1), (-1, -1), (1, 1), (-1, 1), (1, -1))


def _labels_2d(instances: np.ndarray) -> np.ndarray:
    """Instance ids as a 2D int64 array with negative ids set to background (0)."""
    labels = np.asarray(instances)
    if labels.ndim != 2:
        raise ValueError(f"instances must be a 2D (H, W) label image, got shape {labels.shape}.")
    if labels.dtype.kind == "f":
        if not np.array_equal(labels, np.round(labels)):
            raise ValueError("instances must hold integer ids; got non-integer floating-point values.")
    elif labels.dtype.kind not in "biu":
        raise ValueError(f"instances must hold integer ids, got dtype {labels.dtype}.")
    return np.maximum(labels.astype(np.int64, copy=False), 0)


def _group_starts(sorted_ids: np.ndarray, count: int) -> tuple[np.ndarray, np.ndarray]:
    """First index of each id 0..count-1 in ``sorted_ids`` and each id's size."""
    sizes = np.bincount(sorted_ids, minlength=count)
    starts = np.concatenate(([0], np.cumsum(sizes)[:-1]))
    return starts, sizes


def flows_from_instances(instances: np.ndarray, niter: int | None = None) -> np.ndarray:
    """(2, H, W) float32 flows (dy, dx): unit vectors towards each cell's centre, 0 on background.

    ``instances`` (H, W) integer ids, 0 (or negative) for background; ids need not be consecutive.
    ``niter`` diffusion steps, by default 2 * (height + width) of the largest cell's bounding box, enough
    for heat to reach every pixel of that cell along a reasonable path.

    All cells diffuse at once: the foreground pixels form one list, each with the indices of its 8
    neighbours of the same id (other pixels point to a constant 0), so a step is one gather and a few adds
    over the cell pixels, whatever the number of cells. Gradients are central differences of log(1 + T)
    in which a neighbour outside the cell counts as 0, the same absorbing boundary as the diffusion
    (Cellpose's per-cell computation): at a border the flow points straight into the cell.
    """
    labels = _labels_2d(instances)
    if niter is not None and (int(niter) != niter or niter < 1):
        raise ValueError(f"niter must be a positive integer or None, got {niter!r}.")
    height, width = labels.shape
    flows = np.zeros((2, height, width), np.float32)
    rows, cols = np.nonzero(labels)
    if rows.size == 0:
        return flows

    # Work on the bounding box of all cells, padded by one background pixel so that flat neighbour offsets
    # never wrap around a row or leave the array.
    top, left = rows.min(), cols.min()
    box = labels[top : rows.max() + 1, left : cols.max() + 1]
    padded = np.pad(box, 1)
    stride = padded.shape[1]
    values = padded.ravel()
    pixels = np.flatnonzero(values)  # row-major, so pixel rows are non-decreasing
    count = pixels.size
    raw_ids = values[pixels]
    _, ids = np.unique(raw_ids, return_inverse=True)
    ids = ids.ravel()
    n_cells = int(ids.max()) + 1
    py, px = np.divmod(pixels, stride)

    # Index of every padded pixel in the pixel list; `count` (an extra always-zero slot) elsewhere.
    index = np.full(values.size, count, np.intp)
    index[pixels] = np.arange(count)
    neighbours = np.empty((len(_NEIGHBOURS), count), np.intp)
    for k, (dy, dx) in enumerate(_NEIGHBOURS):
        position = pixels + dy * stride + dx
        neighbours[k] = np.where(values[position] == raw_ids, index[position], count)

    # Centres: the pixel nearest to the median of the cell's coordinates; ties go to the first pixel in
    # row-major order.
    by_rows = np.argsort(ids, kind="stable")  # rows ascend within each cell (row-major pixel order)
    by_cols = np.lexsort((px, ids))
    starts, sizes = _group_starts(ids[by_rows], n_cells)
    low, high = starts + (sizes - 1) // 2, starts + sizes // 2
    rows_sorted, cols_sorted = py[by_rows], px[by_cols]
    median_y = (rows_sorted[low] + rows_sorted[high]) / 2.0
    median_x = (cols_sorted[low] + cols_sorted[high]) / 2.0
    distance = (py - median_y[ids]) ** 2 + (px - median_x[ids]) ** 2
    centres = np.lexsort((distance, ids))[starts]

    if niter is None:
        ends = starts + sizes - 1
        extent = (rows_sorted[ends] - rows_sorted[starts] + 1) + (cols_sorted[ends] - cols_sorted[starts] + 1)
        niter = 2 * int(extent.max())

    heat = np.zeros(count + 1)  # float64: heat far from the centre of a long cell is tiny but not zero
    gathered = np.empty((len(_NEIGHBOURS), count))
    for _ in range(int(niter)):
        heat[centres] += 1.0
        np.take(heat, neighbours, out=gathered, mode="clip")  # indices are valid; no buffering
        pairs = gathered[0::2] + gathered[1::2]  # u+d, l+r, ul+dr, ur+dl
        quads = pairs[0::2] + pairs[1::2]
        heat[:count] = ((quads[0] + quads[1]) + heat[:count]) / 9.0

    log_heat = np.log1p(heat)  # the extra slot stays 0
    grad_y = log_heat[neighbours[1]] - log_heat[neighbours[0]]
    grad_x = log_heat[neighbours[3]] - log_heat[neighbours[2]]
    norm = np.sqrt(grad_y * grad_y + grad_x * grad_x)
    norm[norm == 0] = 1.0  # zero vectors stay zero
    out_y, out_x = py - 1 + top, px - 1 + left
    flows[0, out_y, out_x] = grad_y / norm
    flows[1, out_y, out_x] = grad_x / norm
    return flows


def _device_of(*values: object, device: str | torch.device | None) -> torch.device:
    """The requested device, else that of the first tensor given, else the CPU."""
    if device is not None:
        return torch.device(device)
    for value in values:
        if isinstance(value, torch.Tensor):
            return value.device
    return torch.device("cpu")


def follow_flows(
    flows: torch.Tensor | np.ndarray,
    points: torch.Tensor | np.ndarray,
    niter: int = 200,
    chunk_size: int = 2**20,
    device: str | torch.device | None = None,
) -> torch.Tensor | np.ndarray:
    """End positions (N, 2) (y, x) of ``points`` (N, 2) moved ``niter`` Euler steps along ``flows``.

    Each step is p <- p + flow(p), the (2, H, W) flow field (dy, dx) interpolated bilinearly at p
    (``grid_sample``, ``align_corners=True``: pixel centres at integer positions), then p is clamped to
    the image. Runs on ``device``, by default that of ``flows`` (a CUDA tensor decodes on the GPU).
    Points go through in chunks of at most ``chunk_size``, so the memory beyond the flow field itself is a
    few buffers of one chunk, whatever the image size. Returns a tensor on the device when ``flows`` is a
    tensor, else a numpy array.
    """
    _check_count("niter", niter, 0)
    _check_count("chunk_size", chunk_size, 1)
    target = _device_of(flows, points, device=device)
    field = torch.as_tensor(flows).to(device=target, dtype=torch.float32)
    if field.ndim != 3 or field.shape[0] != 2:
        raise ValueError(f"flows must be a (2, H, W) field (dy, dx), got shape {tuple(field.shape)}.")
    positions = torch.as_tensor(points).to(device=target, dtype=torch.float32)
    if positions.ndim != 2 or positions.shape[1] != 2:
        raise ValueError(f"points must be (N, 2) (y, x) positions, got shape {tuple(positions.shape)}.")
    height, width = field.shape[1:]
    field = field[None]
    upper = torch.tensor([height - 1, width - 1], dtype=torch.float32, device=target)
    lower = torch.zeros_like(upper)
    # Pixel (y, x) -> grid_sample's normalised (x, y) in [-1, 1]; a side of 1 px maps everything to it.
    scale = torch.tensor([2.0 / max(width - 1, 1), 2.0 / max(height - 1, 1)], device=target)
    ends = torch.empty_like(positions)
    with torch.inference_mode():
        for start in range(0, positions.shape[0], int(chunk_size)):
            p = torch.maximum(torch.minimum(positions[start : start + int(chunk_size)], upper), lower)
            for _ in range(int(niter)):
                grid = (p.flip(-1) * scale - 1.0)[None, None]  # (1, 1, n, 2) as (x, y)
                step = F.grid_sample(field, grid, mode="bilinear", padding_mode="border", align_corners=True)
                p = torch.maximum(torch.minimum(p + step[0, :, 0].T, upper), lower)
            ends[start : start + p.shape[0]] = p
    if isinstance(flows, torch.Tensor):
        return ends
    return ends.cpu().numpy()


def _sinks(ends: np.ndarray) -> tuple[np.ndarray, tuple[int, int]]:
    """Labels of the histogram bins of the rounded end points (N, 2) int, and the bins' origin."""
    origin = ends.min(axis=0)
    local = ends - origin
    shape = tuple(int(s) for s in local.max(axis=0) + 1)
    histogram = np.bincount(np.ravel_multi_index(local.T, shape), minlength=shape[0] * shape[1])
    histogram = histogram.reshape(shape)
    peaks = ndi.maximum_filter(histogram, size=SEED_WINDOW, mode="constant", cval=0)
    seeds = (histogram == peaks) & (histogram > SEED_MIN_COUNT)
    # A plateau of equal maxima is one seed, not several cells.
    labels, _ = ndi.label(seeds, structure=np.ones((3, 3), bool))
    grows = histogram > GROW_MIN_COUNT
    for _ in range(GROW_ITERATIONS):
        grown = ndi.grey_dilation(labels, size=(3, 3), mode="constant", cval=0)
        joins = (labels == 0) & grows & (grown > 0)
        if not joins.any():
            break
        labels[joins] = grown[joins]
    return labels, (int(origin[0]), int(origin[1]))


def _check_count(name: str, value: int, low: int) -> None:
    """``value`` is a whole number >= ``low``, or ValueError naming ``name``."""
    if int(value) != value or value < low:
        kind = "positive" if low == 1 else "non-negative"
        raise ValueError(f"{name} must be a {kind} integer, got {value!r}.")


def _check_threshold(name: str, value: float, low: float, high: float) -> float:
    value = float(value)
    if not (low <= value <= high):
        raise ValueError(f"{name} must be in [{low}, {high}], got {value}.")
    return value


def masks_from_flows(
    flows: np.ndarray | torch.Tensor,
    cell_probability: np.ndarray | torch.Tensor,
    prob_threshold: float = 0.5,
    flow_threshold: float | None = 0.4,
    niter: int = 200,
    min_size: int = 15,
    device: str | torch.device | None = None,
    chunk_size: int = 2**20,
) -> np.ndarray:
    """(H, W) int32 instance ids 1..n (0 = background) from predicted flows (2, H, W) and p(cell) (H, W).

    ``flows`` are the unit-vector flows of :func:`flows_from_instances` (dy, dx) as the network predicts
    them. Foreground: p(cell) > ``prob_threshold``; the flows are set to 0 outside it, so pixels stop at
    the foreground's edge instead of drifting into the background. From every foreground pixel the flows
    are followed for ``niter`` steps on ``device`` (default: that of ``flows``; see :func:`follow_flows`
    for ``chunk_size``), pixels are grouped by sink (module docstring), cells whose recomputed flows have a
    mean squared error above ``flow_threshold`` are dropped (``None`` or <= 0: no check; the error of
    unit vectors is at most 4), then cells under ``min_size`` px; holes inside a cell are filled with it
    and ids made consecutive.
    """
    return masks_for_flow_thresholds(
        flows, cell_probability, prob_threshold, [flow_threshold], niter, min_size, device, chunk_size
    )[0]


def masks_for_flow_thresholds(
    flows: np.ndarray | torch.Tensor,
    cell_probability: np.ndarray | torch.Tensor,
    prob_threshold: float,
    flow_thresholds: Sequence[float | None],
    niter: int = 200,
    min_size: int = 15,
    device: str | torch.device | None = None,
    chunk_size: int = 2**20,
) -> list[np.ndarray]:
    """:func:`masks_from_flows` for several ``flow_thresholds`` at once: the flows are followed and the
    cells' flow errors computed once, which is most of the cost (tuning tries several thresholds)."""
    flows_shape, prob_shape = tuple(flows.shape), tuple(cell_probability.shape)
    if len(flows_shape) != 3 or flows_shape[0] != 2:
        raise ValueError(f"flows must be a (2, H, W) field (dy, dx), got shape {flows_shape}.")
    if prob_shape != flows_shape[1:]:
        raise ValueError(
            f"cell probability {prob_shape} must match the flows' spatial shape {flows_shape[1:]} "
            f"(flows {flows_shape})."
        )
    prob_threshold = _check_threshold("prob_threshold", prob_threshold, 0.0, 1.0)
    for flow_threshold in flow_thresholds:
        if flow_threshold is not None and not math.isfinite(float(flow_threshold)):
            raise ValueError(f"flow_threshold must be a finite number or None, got {flow_threshold}.")
    _check_count("niter", niter, 1)
    _check_count("min_size", min_size, 0)
    _check_count("chunk_size", chunk_size, 1)

    target = _device_of(flows, cell_probability, device=device)
    field = torch.as_tensor(flows).to(device=target, dtype=torch.float32)
    if not torch.isfinite(field).all():
        raise ValueError("flows contain NaN or infinite values.")
    foreground = torch.as_tensor(cell_probability).to(device=target) > prob_threshold
    height, width = prob_shape
    masks = np.zeros((height, width), np.int32)
    if not foreground.any():
        return [masks.copy() for _ in flow_thresholds]

    starts = torch.nonzero(foreground)  # (N, 2) row-major
    ends = follow_flows(field * foreground, starts.float(), niter=niter, chunk_size=chunk_size)
    ends = torch.round(ends).long().cpu().numpy()
    starts = starts.cpu().numpy()
    bins, (y0, x0) = _sinks(ends)
    masks[starts[:, 0], starts[:, 1]] = bins[ends[:, 0] - y0, ends[:, 1] - x0]
    if not masks.any():
        return [masks.copy() for _ in flow_thresholds]

    mean_error = None
    if any(t is not None and t > 0 for t in flow_thresholds):
        predicted = field.cpu().numpy()
        error = ((flows_from_instances(masks) - predicted) ** 2).sum(axis=0)
        cells = masks.ravel()
        sizes = np.bincount(cells)
        mean_error = np.bincount(cells, weights=error.ravel(), minlength=sizes.size) / np.maximum(sizes, 1)
    return [_kept_cells(masks.copy(), mean_error, t, min_size) for t in flow_thresholds]


def _kept_cells(
    masks: np.ndarray, mean_error: np.ndarray | None, flow_threshold: float | None, min_size: int
) -> np.ndarray:
    """Sink groups without the cells whose flow error exceeds ``flow_threshold`` and those under
    ``min_size`` px, holes filled, ids made consecutive."""
    height, width = masks.shape
    if mean_error is not None and flow_threshold is not None and flow_threshold > 0:
        bad = mean_error > float(flow_threshold)
        bad[0] = False
        masks[bad[masks]] = 0

    masks = without_small_cells(masks, min_size)

    for label, box in enumerate(ndi.find_objects(masks), start=1):
        if box is None:
            continue
        window = masks[box]  # a view: filled in place
        window[ndi.binary_fill_holes(window == label) & (window == 0)] = label

    ids, consecutive = np.unique(masks, return_inverse=True)
    if ids[0] != 0:  # no background at all
        consecutive = consecutive + 1
    return consecutive.reshape(height, width).astype(np.int32)


def transform_flows(
    flows: np.ndarray | torch.Tensor,
    flip_y: bool = False,
    flip_x: bool = False,
    transpose: bool = False,
    inverse: bool = False,
) -> np.ndarray | torch.Tensor:
    """Flows (..., 2, H, W) (dy, dx) of the image flipped and/or transposed as the flags say.

    Order (forward): first the flips, in the input's axes (``flip_y`` reverses rows and negates dy,
    ``flip_x`` reverses columns and negates dx), then ``transpose`` (swaps the two spatial axes and the two
    components). This is the image transform ``image[..., ::-1, :]`` / ``image[..., ::-1]`` followed by
    ``swapaxes(-1, -2)``; e.g. ``np.rot90(image)`` is ``flip_x=True, transpose=True``. With ``inverse``
    the transform is undone instead (transpose first, then the flips): map a test-time-augmented
    prediction back with the same flags and ``inverse=True``. Numpy results are contiguous
    (``torch.from_numpy`` accepts them).
    """
    if flows.ndim < 3 or flows.shape[-3] != 2:
        raise ValueError(f"flows must be (..., 2, H, W) (dy, dx), got shape {tuple(flows.shape)}.")
    is_tensor = isinstance(flows, torch.Tensor)

    def flip(values, axis: int, component: int):
        sign = [1.0, 1.0]
        sign[component] = -1.0
        if is_tensor:
            factor = torch.tensor(sign, dtype=values.dtype, device=values.device).reshape(2, 1, 1)
            return torch.flip(values, dims=(axis,)) * factor
        return np.flip(values, axis=axis) * np.array(sign, dtype=values.dtype).reshape(2, 1, 1)

    def swap(values):  # spatial axes and components
        if is_tensor:
            return torch.flip(values.transpose(-1, -2), dims=(-3,))
        return np.flip(np.swapaxes(values, -1, -2), axis=-3)

    out = flows
    if inverse and transpose:
        out = swap(out)
    if flip_y:
        out = flip(out, -2, 0)
    if flip_x:
        out = flip(out, -1, 1)
    if transpose and not inverse:
        out = swap(out)
    return out.contiguous() if is_tensor else np.ascontiguousarray(out)
