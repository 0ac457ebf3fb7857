"""Instance segmentation beyond class maps: the distance and flow representations of cells, their
decoding into instance labels, and per-cell measurements of the result."""

from __future__ import annotations

import numpy as np


def without_small_cells(labels: np.ndarray, min_size: int) -> np.ndarray:
    """``labels`` with cells of fewer than ``min_size`` pixels set to background (scikit-image's
    ``remove_small_objects`` changed its size argument in 0.26; this is the same for every version)."""
    if min_size <= 0 or not labels.any():
        return labels
    small = np.bincount(labels.ravel()) < min_size
    small[0] = False
    return np.where(small[labels], 0, labels)
