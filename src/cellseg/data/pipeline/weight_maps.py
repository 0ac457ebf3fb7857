"""U-Net border weight maps (Ronneberger et al., MICCAI 2015, eq. 2) from instance labels.

    w(x) = w_c(x) + w0 * exp(-(d1(x) + d2(x))^2 / (2 sigma^2))

d1 and d2 are the Euclidean distances from pixel x to the nearest and the second-nearest cell (distance to
a cell = distance to its nearest pixel), w0 = 10 and sigma = 5 px in the paper, and w_c balances the class
frequencies. The border term is applied to **background pixels only**, as in the paper, where it makes the
network learn the thin background gaps that separate touching cells. Pixels inside a cell get w_c only
(for them d1 = 0 and the term would just up-weight every cell pixel near a neighbour). Consequence: cells
that touch with no background pixel between them get no border weight at their contact; the paper's data
had a separation border of background between touching cells.

d1, d2 are computed per cell with ``scipy.ndimage.distance_transform_edt`` inside the cell's bounding box
grown by the distance beyond which the border term is below ``tolerance * w0`` (d1 + d2 > sigma *
sqrt(2 ln(1/tolerance)), 27 px for sigma = 5): exact up to that tolerance, and linear in the number of
cells instead of one full-image transform per cell. The map depends on the instance labels only, so it is
deterministic and computed once per image (cache it; crop and augment it with the mask).

The map belongs to the label pipeline: the loss that needs it (``unet_weighted_ce``) only names its
settings and reads the map from the batch.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import ndimage as ndi

from cellseg.errors import ConfigError

ClassWeights = str | Sequence[float] | None


def class_balance_weights(cells: np.ndarray, class_weights: ClassWeights) -> np.ndarray:
    """w_c per pixel (float32) for the background / cell classes of the boolean map ``cells``.

    ``None``: 1 everywhere. ``"balanced"``: w_c(k) = N / (K N_k) over the K classes present in the image
    (scikit-learn's "balanced"; the mean weight is then 1). A sequence: [w_background, w_cell].
    """
    if class_weights is None:
        return np.ones(cells.shape, np.float32)
    if isinstance(class_weights, str):
        counts = np.array([(~cells).sum(), cells.sum()], dtype=np.float64)
        present = counts > 0
        weights = np.ones(2)
        weights[present] = cells.size / (present.sum() * counts[present])
    else:
        weights = np.asarray(class_weights, dtype=np.float64)
    return np.where(cells, weights[1], weights[0]).astype(np.float32)


def nearest_two_cell_distances(instances: np.ndarray, max_distance: float) -> tuple[np.ndarray, np.ndarray]:
    """(d1, d2): distances to the nearest and second-nearest instance; inf where farther than ``max_distance``."""
    d1 = np.full(instances.shape, np.inf)
    d2 = np.full(instances.shape, np.inf)
    margin = math.ceil(max_distance)
    height, width = instances.shape
    for label, box in enumerate(ndi.find_objects(instances), start=1):
        if box is None:
            continue
        rows = slice(max(box[0].start - margin, 0), min(box[0].stop + margin, height))
        cols = slice(max(box[1].start - margin, 0), min(box[1].stop + margin, width))
        distance = ndi.distance_transform_edt(instances[rows, cols] != label)
        best, second = d1[rows, cols], d2[rows, cols]  # views: updated in place
        closer = distance < best
        second[...] = np.where(closer, best, np.minimum(second, distance))
        best[...] = np.where(closer, distance, best)
    return d1, d2


def unet_weight_map(
    instances: np.ndarray,
    w0: float = 10.0,
    sigma: float = 5.0,
    class_weights: ClassWeights = None,
    tolerance: float = 1e-6,
) -> np.ndarray:
    """The U-Net weight map (H, W) float32 of an instance label image (H, W) int, 0 = background.

    See the module docstring for the formula and the choices made (border term on background pixels only;
    terms below ``tolerance * w0`` dropped).
    """
    instances = np.asarray(instances)
    if instances.ndim != 2 or not np.issubdtype(instances.dtype, np.integer):
        raise ValueError(
            f"instances must be a 2D integer label image, got {instances.dtype} {instances.shape}."
        )
    if instances.min(initial=0) < 0:
        raise ValueError("instances must be >= 0 (0 = background, k > 0 = cell k).")
    cells = instances > 0
    weights = class_balance_weights(cells, class_weights)
    if w0 == 0 or not cells.any():
        return weights
    cutoff = sigma * math.sqrt(2.0 * math.log(1.0 / tolerance))
    d1, d2 = nearest_two_cell_distances(instances.astype(np.int64, copy=False), cutoff)
    with np.errstate(invalid="ignore"):
        border = w0 * np.exp(-((d1 + d2) ** 2) / (2.0 * sigma**2))
    border[cells | ~np.isfinite(border)] = 0.0
    return (weights + border).astype(np.float32)


@dataclass(frozen=True)
class UNetWeightMap:
    """The weight map as a configured, picklable callable for the data pipeline: ``UNetWeightMap()(instances)``.

    Deterministic (same labels, same map), so the pipeline computes it once per image on the full,
    uncropped instance labels, caches it (``cache_key`` names the settings), and crops/augments it with the
    mask (nearest-neighbour is not needed: it is a smooth float map, bilinear is fine).
    """

    w0: float = 10.0
    sigma: float = 5.0
    class_weights: str | tuple[float, ...] | None = "balanced"
    tolerance: float = 1e-6

    def __post_init__(self) -> None:
        if not (math.isfinite(self.w0) and self.w0 >= 0):
            raise ConfigError(f"loss.w0 must be >= 0, got {self.w0}.")
        if not (math.isfinite(self.sigma) and self.sigma > 0):
            raise ConfigError(f"loss.sigma must be > 0 (pixels), got {self.sigma}.")
        if not 0 < self.tolerance < 1:
            raise ConfigError(f"tolerance must be in (0, 1), got {self.tolerance}.")
        weights = self.class_weights
        if isinstance(weights, str):
            if weights != "balanced":
                raise ConfigError(
                    f"loss.class_weights of the U-Net weight map must be 'balanced', null or "
                    f"[w_background, w_cell], got {weights!r}."
                )
        elif weights is not None:
            values = tuple(float(w) for w in weights)
            if len(values) != 2 or min(values) < 0 or not all(map(math.isfinite, values)):
                raise ConfigError(
                    "loss.class_weights of the U-Net weight map must be 'balanced', null or "
                    f"[w_background, w_cell] (two numbers >= 0), got {list(values)}."
                )
            object.__setattr__(self, "class_weights", values)
        object.__setattr__(self, "w0", float(self.w0))
        object.__setattr__(self, "sigma", float(self.sigma))

    def __call__(self, instances: np.ndarray) -> np.ndarray:
        return unet_weight_map(instances, self.w0, self.sigma, self.class_weights, self.tolerance)

    @property
    def cache_key(self) -> str:
        """A string that changes whenever the map would (for caching maps on disk or in memory)."""
        return f"unet_w0={self.w0:g}_sigma={self.sigma:g}_wc={self.class_weights}_tol={self.tolerance:g}"


def weight_map_to_image(weight_map: np.ndarray, vmax: float | None = None) -> np.ndarray:
    """The map scaled to [0, 1] (by ``vmax`` or its maximum) for display, e.g. as a TensorBoard image."""
    top = float(vmax if vmax is not None else np.max(weight_map, initial=0.0))
    return (
        np.clip(np.asarray(weight_map, np.float32) / top, 0.0, 1.0) if top > 0 else np.zeros_like(weight_map)
    )
