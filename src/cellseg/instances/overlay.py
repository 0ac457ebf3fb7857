"""Outlines of segmented cells drawn over the image, for checking a result at a glance.

The image is shown in **grey**, so that colour means one thing only: a cell outline. With several
channels, each plane is contrast-stretched on its own and the planes are averaged, so a structure seen in
any channel (nuclei in one, cytoplasm in another) is visible; ``channel=k`` shows plane k alone instead.
Each plane is stretched to its 1st-99.8th percentiles (as Fiji's "Auto" contrast does, saturating a few
bright pixels), ignoring NaN; a constant plane is shown black instead of dividing by zero.

Outlines are each cell's own boundary pixels (``find_boundaries(mode='inner')``: inside the cell, so two
touching cells show two adjacent lines, one per cell). Colours come from a palette of bright saturated
colours, assigned so that cells which touch or nearly touch (within ``NEIGHBOUR_DISTANCE`` px) get
different colours: a merged pair shows as one colour around both, a correct split as two. Colours depend
only on the labels, so the overlays of reruns are identical.
"""

from __future__ import annotations

import numpy as np
from skimage.segmentation import find_boundaries

from cellseg.instances.measure import check_labels, image_planes

#: Bright, saturated colours (each far from grey: max - min channel >= 128), visible on black and white.
PALETTE: tuple[tuple[int, int, int], ...] = (
    (255, 255, 0),  # yellow
    (0, 255, 255),  # cyan
    (255, 0, 255),  # magenta
    (0, 255, 0),  # green
    (255, 128, 0),  # orange
    (0, 128, 255),  # azure
    (255, 0, 128),  # rose
    (128, 255, 0),  # chartreuse
    (255, 0, 0),  # red
    (160, 64, 255),  # violet
)
#: Cells whose pixels are this close (Chebyshev distance, px) count as neighbours and differ in colour;
#: 2 also covers cells separated by a one-pixel gap, whose outlines are then 2 px apart.
NEIGHBOUR_DISTANCE = 2
PERCENTILES = (1.0, 99.8)


def stretch(plane: np.ndarray, percentiles: tuple[float, float] = PERCENTILES) -> np.ndarray:
    """``plane`` mapped to [0, 1] between its percentiles (float32); NaN/inf pixels and constant planes -> 0.

    When the percentiles coincide (a mostly constant plane with a few bright pixels) the plane's min and
    max are used instead, so sparse signal still shows.
    """
    plane = np.asarray(plane, dtype=np.float64)
    finite = np.isfinite(plane)
    if not finite.any():
        return np.zeros(plane.shape, np.float32)
    values = plane[finite]
    low, high = np.percentile(values, percentiles)
    if high <= low:
        low, high = values.min(), values.max()
    if high <= low:
        return np.zeros(plane.shape, np.float32)
    out = np.clip((plane - low) / (high - low), 0.0, 1.0)
    return np.where(finite, out, 0.0).astype(np.float32)


def neighbour_pairs(labels: np.ndarray, distance: int = NEIGHBOUR_DISTANCE) -> np.ndarray:
    """(N, 2) array of the label pairs (a < b) with pixels within ``distance`` px (Chebyshev) of each other."""
    labels = np.asarray(labels)
    height, width = labels.shape
    pairs = []
    # Half of the (2d+1)^2 window: each unordered offset once.
    for dy in range(0, distance + 1):
        for dx in range(-distance, distance + 1):
            if dy == 0 and dx <= 0:
                continue
            a = labels[: height - dy, max(0, -dx) : width - max(0, dx)]
            b = labels[dy:, max(0, dx) : width - max(0, -dx)]
            differ = (a != b) & (a > 0) & (b > 0)
            if differ.any():
                first, second = a[differ], b[differ]
                pairs.append(np.stack([np.minimum(first, second), np.maximum(first, second)], axis=1))
    if not pairs:
        return np.zeros((0, 2), dtype=np.int64)
    return np.unique(np.concatenate(pairs).astype(np.int64), axis=0)


def outline_colours(labels: np.ndarray, distance: int = NEIGHBOUR_DISTANCE) -> dict[int, int]:
    """Palette index per label id: neighbours differ whenever a cell has fewer neighbours than colours.

    Greedy colouring in label order; each cell prefers colour ``label % len(PALETTE)`` (so colours vary
    over the image) and otherwise takes the first one no already-coloured neighbour has. A cell with
    more neighbours than colours (not seen in real tissue at 10 colours) takes its least-used colour.
    """
    ids = np.unique(labels)
    ids = ids[ids > 0]
    neighbours: dict[int, list[int]] = {int(i): [] for i in ids}
    for a, b in neighbour_pairs(labels, distance):
        neighbours[int(a)].append(int(b))
        neighbours[int(b)].append(int(a))
    size = len(PALETTE)
    colour: dict[int, int] = {}
    for cell in neighbours:
        taken = [colour[n] for n in neighbours[cell] if n in colour]
        free = [(cell + k) % size for k in range(size) if (cell + k) % size not in taken]
        colour[cell] = free[0] if free else min(range(size), key=taken.count)
    return colour


def outline_overlay(image: np.ndarray, labels: np.ndarray, channel: int | None = None) -> np.ndarray:
    """(H, W, 3) uint8 RGB: ``image`` in grey with every cell's outline in its own bright colour.

    ``image`` is (H, W) or (C, H, W) in any numeric dtype; ``labels`` the (H, W) instance labels.
    ``channel=None`` shows the mean of the contrast-stretched planes, ``channel=k`` plane k.
    """
    labels = check_labels(labels)
    planes = image_planes(image, labels.shape)
    if channel is None:
        grey = np.mean([stretch(plane) for plane in planes], axis=0)
    elif not -planes.shape[0] <= channel < planes.shape[0]:
        raise ValueError(f"channel is {channel}; the image has {planes.shape[0]} channel(s) (0-based index).")
    else:
        grey = stretch(planes[channel])
    grey8 = np.round(grey * 255).astype(np.uint8)
    rgb = np.repeat(grey8[:, :, None], 3, axis=2)
    outline = find_boundaries(labels, mode="inner") & (labels > 0)
    if outline.any():
        colours = outline_colours(labels)
        palette = np.asarray(PALETTE, dtype=np.uint8)
        ids = labels[outline]
        lookup_ids = np.fromiter(colours.keys(), dtype=np.int64, count=len(colours))
        lookup_colours = np.fromiter(colours.values(), dtype=np.int64, count=len(colours))
        order = np.argsort(lookup_ids)
        index = lookup_colours[order][np.searchsorted(lookup_ids[order], ids)]
        rgb[outline] = palette[index]
    return rgb
