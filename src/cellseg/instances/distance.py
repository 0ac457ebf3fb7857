"""Instances from a cell probability and a per-cell normalised distance-to-border map (``target=distance``).

Touching cells share a border where the distance falls to zero, while each cell's interior rises to a
peak near 1. The tops of those peaks (the cores above a threshold) are therefore one marker per cell, and
a watershed of the negated distance from those markers, restricted to the foreground, splits cells along
their shared border.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi
from skimage.segmentation import relabel_sequential, watershed

from cellseg.instances import without_small_cells


def instances_from_distance(
    cell_probability: np.ndarray,
    distance: np.ndarray,
    prob_threshold: float = 0.5,
    peak_threshold: float = 0.5,
    smooth_sigma: float = 1.0,
    min_size: int = 15,
) -> np.ndarray:
    """Instance ids (H, W) int32 from p(cell) (H, W) and the predicted normalised distance (H, W).

    Foreground: p(cell) > ``prob_threshold``. Markers: the cells' cores, connected regions where the
    distance (smoothed by a Gaussian of ``smooth_sigma`` px) exceeds ``peak_threshold``; a core is the
    top of one cell's distance peak, and cores of touching cells are apart because the distance falls
    towards their shared border. (Single-pixel local maxima, ``peak_local_max``, over-split: an elongated
    or bent cell has a ridge of maxima, and a predicted map is noisy. Measured on the synthetic
    validation images after 6 epochs: AP50 0.42 with peaks, 0.82 with cores, the best setting of each.)
    A foreground component without a core keeps one marker at its highest distance, so a faint cell is
    not lost. Cells under ``min_size`` px are removed and ids are made consecutive.
    """
    cell_probability, distance = np.asarray(cell_probability), np.asarray(distance, np.float32)
    if cell_probability.shape != distance.shape or cell_probability.ndim != 2:
        raise ValueError(
            f"cell probability {cell_probability.shape} and distance {distance.shape} must be the same 2D shape."
        )
    foreground = cell_probability > prob_threshold
    if not foreground.any():
        return np.zeros(distance.shape, np.int32)
    smoothed = ndi.gaussian_filter(distance, smooth_sigma) if smooth_sigma > 0 else distance
    labels = watershed_from_cores(smoothed, (smoothed > peak_threshold) & foreground, foreground)
    return relabel_sequential(without_small_cells(labels, int(min_size)))[0].astype(np.int32)


def watershed_from_cores(
    height: np.ndarray, cores: np.ndarray, foreground: np.ndarray, diagonal: bool = False
) -> np.ndarray:
    """Instance ids (H, W): a watershed of ``-height`` inside ``foreground`` seeded by the connected
    ``cores`` (one cell each; ``diagonal``: pixels touching at a corner are connected); a foreground
    component without a core keeps one marker at its highest point, so no object is lost for want of
    a core."""
    markers, count = ndi.label(cores & foreground, np.ones((3, 3)) if diagonal else None)
    components, total = ndi.label(foreground)
    without_core = np.setdiff1d(np.arange(1, total + 1), components[markers > 0])
    if len(without_core):
        tops = ndi.maximum_position(height, components, without_core)
        for marker, position in enumerate(tops, start=count + 1):
            markers[position] = marker
    return watershed(-height, markers=markers, mask=foreground)


def split_touching(cells: np.ndarray, depth: float) -> np.ndarray:
    """Instance ids (H, W) int32 of a binary mask whose touching round objects (nuclei) are split.

    Each object's centre is a peak of the mask's Euclidean distance transform; two touching nuclei are
    two peaks joined by a neck where the distance dips. Peaks that rise at least ``depth`` px above
    every path to a higher one (the h-maxima of the transform, CellProfiler's "declump by shape" in
    morphological terms) seed a watershed of the negated distance, which cuts along the necks. An
    elongated nucleus has a ridge, not a dip, so it stays whole unless its ridge sags by ``depth``.
    """
    from skimage.morphology import local_maxima, reconstruction

    if depth <= 0:
        raise ValueError(f"depth must be > 0 pixels, got {depth}.")
    cells = np.asarray(cells, bool)
    if not cells.any():
        return np.zeros(cells.shape, np.int32)
    distance = ndi.distance_transform_edt(cells)
    # The h-maxima transform: every peak lowered by ``depth``, flat where its top was, so one peak is
    # one plateau (skimage's ``h_maxima`` instead returns the top pixels, several for one peak with
    # tied maxima: it split a convex nucleus of the brightfield stack in two). The plateau of a bent
    # nucleus's ridge runs diagonally, one pixel wide: it is one core only with diagonal connections.
    lowered = reconstruction(distance - depth, distance, method="dilation")
    cores = local_maxima(lowered, allow_borders=True) & cells
    # Every marker keeps at least its own pixels, so the ids are already 1..n.
    return watershed_from_cores(distance, cores, cells, diagonal=True).astype(np.int32)
