"""Synthetic fluorescence-microscopy fields of view with instance labels, generated from a seed.

This is the built-in data set (``data=synthetic``): nothing to download, identical on every machine,
and made to answer the framework's main question, *which input channels segment cells best*. Each
field has five registered channels of the same cells (see ``CHANNEL_NAMES``): four fluorescence
labels and one label-free brightfield image, all passed through the same optics (Gaussian PSF),
uneven illumination, shot noise, read noise and a 12-bit camera. The label map is drawn first and
every channel is rendered from it, so every labelled cell is visible in the fluorescence channels.

The difficulty is deliberate: ``cytoplasm`` fills each cell but with dim cells, thin dim edges and
an uneven background, so a global threshold is good but not perfect; ``brightfield`` shows cells
only through thin edge halos and faint granularity under strongly uneven illumination, so a global
threshold on it fails and a model has to learn shape and context.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import MappingProxyType

import numpy as np
from scipy import fft
from scipy import ndimage as ndi

from cellseg.errors import ConfigError

CHANNEL_NAMES: tuple[str, ...] = ("nucleus", "cytoplasm", "membrane", "mitochondria", "brightfield")

# Image i of a split is drawn from default_rng([seed, SPLIT_KEYS[split], i]): splits never share a stream.
SPLIT_KEYS: MappingProxyType[str, int] = MappingProxyType({"train": 0, "val": 1, "test": 2})

# Cell counts are given for this field size and scaled by area, so density does not depend on `size`.
_REFERENCE_SIZE = 256
# Expected photons per pixel of each channel's typical bright structure (nucleus, cytoplasm, membrane
# ridge before blurring, mitochondrion before blurring, brightfield background) at photon_scale=1.
_PHOTONS = np.array([1500.0, 300.0, 900.0, 3000.0, 1100.0])
# PSF width relative to blur_sigma: it grows with emission wavelength (blue DAPI .. far-red), and
# brightfield is imaged with a high-NA condenser, so it is the sharpest.
_PSF_SCALE = (0.85, 1.0, 1.05, 1.15, 0.8)
# Additive autofluorescence and stray-light background of each fluorescence channel, relative to _PHOTONS.
_BACKGROUND = (0.04, 0.26, 0.07, 0.025)
# Low-order angular harmonics that make cell outlines irregular, and their maximal relative amplitudes.
_HARMONICS = np.array([2, 3, 4, 5], dtype=np.float32)
_HARMONIC_AMPLITUDE = np.array([0.08, 0.08, 0.05, 0.03])
# Share of each channel's light that reaches the camera out of focus, as a wide glow of _GLOW_SIGMA px:
# largest for the whole-cell stain, which fills the cells' full depth; none in transmitted light.
_GLOW = np.array([0.15, 0.3, 0.2, 0.15, 0.0], dtype=np.float32)
_GLOW_SIGMA = 6.0
# Length in one-pixel steps of the longest mitochondrial filaments.
_MITO_STEPS = 10


@dataclass(frozen=True)
class SyntheticCellsParams:
    """Knobs of the generator; the defaults are the framework's default data set.

    - ``size``: image height = width in pixels (>= 32).
    - ``cell_radius``: (min, max) mean radius of a cell in pixels, drawn uniformly per cell.
    - ``cells_per_image``: (min, max) number of cells in a 256x256 field; scaled by (size/256)^2 so the
      cell density and coverage stay the same at other sizes (at least one cell per image).
    - ``touching_fraction``: probability that a new cell is placed against an existing one, sharing
      a border with it, rather than at a random free spot (0 = mostly isolated cells).
    - ``dim_cell_fraction``: share of cells with weak cytoplasm staining (45-70 % of the usual level),
      as in real cultures with uneven dye uptake.
    - ``blur_sigma``: standard deviation in pixels of the Gaussian PSF of the green channel.
    - ``photon_scale``: multiplies all expected photon counts (lower = noisier, dimmer images).
    - ``read_noise``: camera read noise, standard deviation in photoelectrons.
    - ``camera_offset``: camera baseline in ADU added to every pixel, as real sCMOS/CCD cameras do.
    - ``bit_depth``: the camera's ADC depth; values are clipped to [0, 2**bit_depth - 1] and stored as
      uint16. The gain is 2**(bit_depth - 12) ADU per photoelectron (1 at the default 12 bits), so the
      cells fill the same share of the range at any depth.
    - ``illumination_unevenness``: relative amplitude of the smooth brightfield illumination field;
      fluorescence channels get a third of it as flat-field fall-off.
    """

    size: int = 256
    cell_radius: tuple[float, float] = (15.0, 27.0)
    cells_per_image: tuple[int, int] = (16, 26)
    touching_fraction: float = 0.65
    dim_cell_fraction: float = 0.25
    blur_sigma: float = 1.6
    photon_scale: float = 1.0
    read_noise: float = 3.0
    camera_offset: int = 100
    bit_depth: int = 12
    illumination_unevenness: float = 0.35

    def __post_init__(self) -> None:
        if self.size < 32:
            raise ConfigError(f"size must be >= 32 pixels, got {self.size}.")
        r_min, r_max = self.cell_radius
        if not 3.0 <= r_min <= r_max <= self.size:
            raise ConfigError(
                f"cell_radius must be (min, max) pixels with 3 <= min <= max <= size = {self.size}, "
                f"got {self.cell_radius}."
            )
        n_min, n_max = self.cells_per_image
        if not 1 <= n_min <= n_max:
            raise ConfigError(
                f"cells_per_image must be (min, max) with 1 <= min <= max, got {self.cells_per_image}."
            )
        for name in ("touching_fraction", "dim_cell_fraction"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ConfigError(f"{name} must be in [0, 1], got {getattr(self, name)}.")
        if self.blur_sigma <= 0 or self.photon_scale <= 0:
            raise ConfigError(
                f"blur_sigma and photon_scale must be > 0, got {self.blur_sigma} and {self.photon_scale}."
            )
        if self.read_noise < 0 or self.camera_offset < 0 or self.illumination_unevenness < 0:
            raise ConfigError(
                "read_noise, camera_offset and illumination_unevenness must be >= 0, got "
                f"{self.read_noise}, {self.camera_offset} and {self.illumination_unevenness}."
            )
        if not 8 <= self.bit_depth <= 16:
            raise ConfigError(f"bit_depth must be in [8, 16] to fit uint16, got {self.bit_depth}.")


@dataclass(frozen=True)
class _Cells:
    """Placed cells before rasterisation: centres, mean radii and outline shape, one row per cell."""

    centres: np.ndarray  # (n, 2) y, x
    radii: np.ndarray  # (n,)
    aspect: np.ndarray  # (n,) minor/major axis ratio of the base ellipse
    angle: np.ndarray  # (n,) orientation of the base ellipse
    harmonics: np.ndarray  # (n, len(_HARMONICS)) relative amplitudes
    phases: np.ndarray  # (n, len(_HARMONICS))


@dataclass(frozen=True)
class _Layout:
    """The final label map and the per-pixel geometry every channel is rendered from."""

    labels: np.ndarray  # (H, W) int32, 0 = background
    radius: np.ndarray  # (n,) mean radius of cell i + 1 as placed (before neighbours squeezed it)
    edge_distance: np.ndarray  # (H, W) distance to the cell's outline (0 on it and outside cells)
    outline: np.ndarray  # (H, W) bool, cell pixels next to another label or background
    nucleus_distance: np.ndarray  # (H, W) elliptic distance to the own nucleus (< 1 inside it)


def _place_cells(rng: np.random.Generator, params: SyntheticCellsParams) -> _Cells:
    """Centres and radii: many cells pushed against a neighbour (to touch), the rest in free space."""
    size = params.size
    scale = (size / _REFERENCE_SIZE) ** 2
    wanted = max(1, round(rng.integers(params.cells_per_image[0], params.cells_per_image[1] + 1) * scale))
    radii = rng.uniform(*params.cell_radius, size=wanted)
    centres: list[np.ndarray] = []
    kept: list[float] = []
    for radius in radii:
        for _ in range(30):
            touching = bool(centres) and rng.random() < params.touching_fraction
            if touching:
                j = rng.integers(len(centres))
                direction = rng.uniform(0, 2 * np.pi)
                gap = (radius + kept[j]) * rng.uniform(0.8, 0.95)
                candidate = centres[j] + gap * np.array([np.sin(direction), np.cos(direction)])
            else:
                candidate = rng.uniform(0, size, size=2)
            if not (candidate >= 0).all() or not (candidate < size).all():
                continue
            if centres:
                distance = np.hypot(*(np.array(centres) - candidate).T)
                # Touching cells may overlap a little (the outline decides the border); free cells keep clear.
                minimum = (radius + np.array(kept)) * (0.78 if touching else 1.05)
                if (distance < minimum).any():
                    continue
            centres.append(candidate)
            kept.append(radius)
            break
    n = len(kept)
    # float32 throughout: rasterising is the generator's hot loop and needs no more precision.
    return _Cells(
        centres=np.array(centres, dtype=np.float32).reshape(n, 2),
        radii=np.array(kept, dtype=np.float32),
        aspect=rng.uniform(0.65, 1.0, size=n).astype(np.float32),
        angle=rng.uniform(0, np.pi, size=n).astype(np.float32),
        harmonics=(rng.uniform(0, 1, size=(n, len(_HARMONICS))) * _HARMONIC_AMPLITUDE).astype(np.float32),
        phases=rng.uniform(0, 2 * np.pi, size=(n, len(_HARMONICS))).astype(np.float32),
    )


def _outline_radius(cells: _Cells, i: int, theta: np.ndarray) -> np.ndarray:
    """Radius of cell i's outline at polar angle theta: an area-preserving ellipse with wobbles."""
    stretch = 1 / np.sqrt(cells.aspect[i])
    c, s = np.cos(theta - cells.angle[i]), np.sin(theta - cells.angle[i])
    ellipse = 1 / np.sqrt((c / stretch) ** 2 + (s * stretch) ** 2)
    wobble = 1 + np.tensordot(
        np.cos(theta[..., None] * _HARMONICS + cells.phases[i]), cells.harmonics[i], axes=([-1], [0])
    )
    return cells.radii[i] * ellipse * wobble


def _rasterise(cells: _Cells, size: int) -> np.ndarray:
    """Label map: each pixel goes to the cell with the smallest outline-normalised distance below 1.

    Normalising by the outline radius makes a weighted Voronoi border between overlapping cells, so
    touching cells share a smooth border instead of one cell covering the other.
    """
    labels = np.zeros((size, size), dtype=np.int32)
    best = np.full((size, size), np.inf, dtype=np.float32)
    for i in range(len(cells.radii)):
        reach = cells.radii[i] / np.sqrt(cells.aspect[i]) * (1 + cells.harmonics[i].sum()) + 1
        (y0, x0), (y1, x1) = [
            np.clip(np.round(cells.centres[i] + sign * reach).astype(int), 0, size) for sign in (-1, 1)
        ]
        if y0 >= y1 or x0 >= x1:
            continue
        dy = np.arange(y0, y1, dtype=np.float32)[:, None] - cells.centres[i, 0]
        dx = np.arange(x0, x1, dtype=np.float32)[None, :] - cells.centres[i, 1]
        distance = np.hypot(dy, dx) / _outline_radius(cells, i, np.arctan2(dy, dx))
        window = (slice(y0, y1), slice(x0, x1))
        take = (distance < 1) & (distance < best[window])
        best[window][take] = distance[take]
        labels[window][take] = i + 1
    return labels


def _clean_labels(labels: np.ndarray, min_area: float) -> tuple[np.ndarray, np.ndarray]:
    """One connected region per cell, no slivers, ids renumbered 1..n in placement order.

    A cell squeezed by neighbours can split into pieces and a border cell can be cut to a sliver;
    keeping only each cell's largest piece and dropping tiny cells keeps every id a sensible object.
    Returns the new label map and, for each new id, the placement index of its cell.
    """
    cleaned = np.zeros_like(labels)
    for index, window in enumerate(ndi.find_objects(labels), start=1):
        if window is None:
            continue
        pieces, count = ndi.label(labels[window] == index)
        if count > 1:
            pieces = pieces == 1 + int(np.argmax(np.bincount(pieces.ravel())[1:]))
        if np.count_nonzero(pieces) >= min_area:
            cleaned[window][pieces > 0] = index
    present = np.unique(cleaned[cleaned > 0])
    renumber = np.zeros(labels.max() + 1, dtype=np.int32)
    renumber[present] = np.arange(1, len(present) + 1, dtype=np.int32)
    return renumber[cleaned], present - 1


def _outline(labels: np.ndarray) -> np.ndarray:
    """Cell pixels 4-adjacent to another label or background (the image border is not an outline)."""
    outline = np.zeros(labels.shape, dtype=bool)
    vertical = labels[1:] != labels[:-1]
    horizontal = labels[:, 1:] != labels[:, :-1]
    outline[1:] |= vertical
    outline[:-1] |= vertical
    outline[:, 1:] |= horizontal
    outline[:, :-1] |= horizontal
    return outline & (labels > 0)


def _per_pixel(labels: np.ndarray, values: np.ndarray, background: float = 0.0) -> np.ndarray:
    """Per-cell values (value i - 1 for id i) painted onto each cell's pixels, float32 for speed."""
    return np.concatenate([[background], values]).astype(np.float32)[labels]


def _nucleus_distance(
    rng: np.random.Generator,
    labels: np.ndarray,
    centres: np.ndarray,
    radius: np.ndarray,
    edge_distance: np.ndarray,
) -> np.ndarray:
    """Elliptic distance of each cell pixel to its own nucleus (< 1 inside it, inf outside cells).

    The nucleus sits off-centre in the disc around the cell's centre that is still free of its
    outline after neighbours squeezed it, so it stays inside the cell (though, like the cell, it
    can be cut by the image border).
    """
    n = len(radius)
    pixel = np.clip(np.rint(centres).astype(int), 0, labels.shape[0] - 1)
    room = edge_distance[pixel[:, 0], pixel[:, 1]]
    major = np.maximum(np.minimum(rng.uniform(0.45, 0.6, n) * radius, 0.85 * room), 1.5)
    minor = major * rng.uniform(0.7, 1.0, n)
    shift = rng.uniform(0, 1, n) * np.maximum(room - major - 1, 0)
    heading = rng.uniform(0, 2 * np.pi, n)
    angle = rng.uniform(0, np.pi, n)

    yy, xx = np.indices(labels.shape, dtype=np.float32)
    dy = yy - _per_pixel(labels, centres[:, 0] + shift * np.sin(heading))
    dx = xx - _per_pixel(labels, centres[:, 1] + shift * np.cos(heading))
    cos, sin = np.cos(_per_pixel(labels, angle)), np.sin(_per_pixel(labels, angle))
    along = (dx * cos + dy * sin) / _per_pixel(labels, major, background=1.0)
    across = (dy * cos - dx * sin) / _per_pixel(labels, minor, background=1.0)
    distance = np.hypot(along, across)
    distance[labels == 0] = np.inf
    return distance


def _layout(rng: np.random.Generator, params: SyntheticCellsParams) -> _Layout:
    """Place, rasterise and clean the cells, then derive the geometry the channels are drawn from."""
    cells = _place_cells(rng, params)
    labels, source = _clean_labels(_rasterise(cells, params.size), 0.1 * np.pi * params.cell_radius[0] ** 2)
    radius = cells.radii[source]
    outline = _outline(labels)
    edge_distance = ndi.distance_transform_edt((labels > 0) & ~outline).astype(np.float32)
    nucleus_distance = _nucleus_distance(rng, labels, cells.centres[source], radius, edge_distance)
    return _Layout(labels, radius, edge_distance, outline, nucleus_distance)


def _per_cell(rng: np.random.Generator, layout: _Layout, spread: float) -> np.ndarray:
    """A log-normal per-cell brightness factor (median 1) on each cell's pixels: cells never stain alike."""
    return _per_pixel(layout.labels, rng.lognormal(0.0, spread, len(layout.radius)))


def _gaussian_transfer(shape: tuple[int, int], sigma: np.ndarray) -> np.ndarray:
    """Fourier transfer function (for ``fft.rfft2`` of ``shape``) of a Gaussian blur, one plane per sigma.

    Blurring in Fourier space costs the same for any sigma and blurs all planes in one call, which
    is several times faster than spatial filtering here.
    """
    rate = -2 * np.pi**2 * np.asarray(sigma, dtype=np.float32)[:, None, None] ** 2
    # exp(rate * (fy^2 + fx^2)) = exp(rate * fy^2) * exp(rate * fx^2): two small exps instead of a full one.
    along_y = np.exp(rate * fft.fftfreq(shape[0]).astype(np.float32)[:, None] ** 2)
    along_x = np.exp(rate * fft.rfftfreq(shape[1]).astype(np.float32)[None, :] ** 2)
    return along_y * along_x


def _texture(rng: np.random.Generator, size: int, sigma: float) -> np.ndarray:
    """Smooth random texture with zero mean and unit standard deviation at a length scale of sigma px.

    Blurred white noise is stationary, so the periodic boundary of the Fourier blur is harmless.
    """
    noise = fft.rfft2(rng.standard_normal((size, size), dtype=np.float32))
    field = fft.irfft2(noise * _gaussian_transfer((size, size), np.array([sigma]))[0], s=(size, size))
    return field / max(float(field.std()), 1e-6)


def _smooth_field(rng: np.random.Generator, size: int) -> np.ndarray:
    """A slowly varying field in [-1, 1] (at most ~1.5 periods per image): illumination, background."""
    position = 2 * np.pi * np.arange(size) / size
    modes = 4
    y = rng.uniform(-1.5, 1.5, (modes, 1)) * position
    x = rng.uniform(-1.5, 1.5, (modes, 1)) * position + rng.uniform(0, 2 * np.pi, (modes, 1))
    amplitude = rng.uniform(0.3, 1.0, (modes, 1))
    # A sum of plane waves cos(y + x) = cos y cos x - sin y sin x, as two small matrix products.
    field = (amplitude * np.cos(y)).T @ np.cos(x) - (amplitude * np.sin(y)).T @ np.sin(x)
    return field / np.abs(field).max()


def _thickness(layout: _Layout, steepness: float) -> np.ndarray:
    """0 at the outline rising to 1 inside: cells are thin at their edges and thick over the middle.

    ``steepness`` is the fraction of the cell radius over which a cell thickens.
    """
    scale = _per_pixel(layout.labels, steepness * layout.radius, background=1.0)
    return (layout.labels > 0) * (1 - np.exp(-layout.edge_distance / scale))


def _nucleus_profile(layout: _Layout) -> np.ndarray:
    """1 inside the nucleus, falling to 0 over its rim."""
    return np.clip(1.5 * (1 - layout.nucleus_distance**2), 0, 1)


def _render_nucleus(rng: np.random.Generator, layout: _Layout) -> np.ndarray:
    """DNA stain: bright, textured (chromatin) blobs of varying brightness, one per cell."""
    chromatin = np.maximum(1 + 0.25 * _texture(rng, layout.labels.shape[0], 1.2), 0)
    return _per_cell(rng, layout, 0.25) * _nucleus_profile(layout) * chromatin


def _render_cytoplasm(rng: np.random.Generator, layout: _Layout, dim_fraction: float) -> np.ndarray:
    """Whole-cell stain: uneven dye uptake (some cells dim), thin dim edges, brighter around the nucleus."""
    n = len(layout.radius)
    dimming = np.where(rng.random(n) < dim_fraction, rng.uniform(0.45, 0.7, n), 1.0)
    level = _per_cell(rng, layout, 0.1) * _per_pixel(layout.labels, dimming)
    outside_nucleus = np.maximum(layout.nucleus_distance - 1, 0)
    perinuclear = np.where(layout.nucleus_distance < 1, 0.85, 1 + 0.15 * np.exp(-outside_nucleus))
    texture = np.maximum(1 + 0.15 * _texture(rng, layout.labels.shape[0], 3.0), 0)
    return level * (0.6 + 0.4 * _thickness(layout, 0.1)) * perinuclear * texture


def _render_membrane(rng: np.random.Generator, layout: _Layout) -> np.ndarray:
    """Membrane stain: a patchy one-pixel ring on every outline, doubled where two cells touch."""
    patchiness = np.maximum(1 + 0.4 * _texture(rng, layout.labels.shape[0], 4.0), 0.2)
    ring = layout.outline * _per_cell(rng, layout, 0.2) * patchiness
    return ring + 0.02 * (layout.labels > 0)


def _render_mitochondria(rng: np.random.Generator, layout: _Layout) -> np.ndarray:
    """Sparse spots and short wiggly filaments in the cytoplasm, crowded around the nucleus."""
    labels = layout.labels
    size = labels.shape[0]
    cytoplasm = (labels > 0) & (layout.nucleus_distance > 1)
    crowding = np.exp(-np.maximum(layout.nucleus_distance - 1, 0))
    weight = (cytoplasm * (0.25 + crowding) * _per_cell(rng, layout, 0.3)).ravel()
    signal = 0.01 * (labels > 0)
    if weight.sum() == 0:
        return signal
    count = rng.poisson(0.008 * np.count_nonzero(cytoplasm))
    seeds = np.stack(
        np.unravel_index(rng.choice(weight.size, count, p=weight / weight.sum()), labels.shape), 1
    )
    heading = rng.uniform(0, 2 * np.pi, (count, 1)) + np.cumsum(rng.normal(0, 0.35, (count, _MITO_STEPS)), 1)
    step = np.stack([np.sin(heading), np.cos(heading)], -1)
    path = np.rint(seeds[:, None] + np.cumsum(step, 1) - step[:, :1]).astype(int)
    length = rng.integers(2, _MITO_STEPS + 1, (count, 1))
    y, x = np.clip(path[..., 0], 0, size - 1), np.clip(path[..., 1], 0, size - 1)
    keep = (np.arange(_MITO_STEPS) < length) & (path == np.clip(path, 0, size - 1)).all(-1)
    keep &= (labels[y, x] == labels[seeds[:, 0], seeds[:, 1]][:, None]) & cytoplasm[y, x]
    brightness = np.broadcast_to(rng.uniform(0.5, 1.5, (count, 1)), keep.shape)
    np.add.at(signal, (y[keep], x[keep]), brightness[keep])
    return signal


def _render_brightfield(rng: np.random.Generator, layout: _Layout) -> np.ndarray:
    """Transmitted light relative to the empty field: cells show as thin phase halos and faint grain.

    A slightly defocused brightfield image of a thin, nearly transparent cell is ~1 + k * Laplacian
    of its optical thickness (the PSF blur applied later turns it into a Laplacian of Gaussian): a
    bright line on the outline, a dark rim inside it and almost no change of the mean level, so
    cells and background have about the same intensity.
    """
    size = layout.labels.shape[0]
    height = _thickness(layout, 0.12) * _per_cell(rng, layout, 0.15) + 0.3 * _nucleus_profile(layout)
    grain = 0.03 * (layout.labels > 0) * _texture(rng, size, 1.0)
    return 1 + 0.6 * ndi.laplace(height) - 0.02 * height + grain


def _optics(
    rng: np.random.Generator, structures: list[np.ndarray], params: SyntheticCellsParams
) -> np.ndarray:
    """The objective's view: a Gaussian PSF per channel, with a random defocus per field of view.

    Widefield fluorescence also collects out-of-focus light, a faint wide glow around bright cells
    that blurs where a cell ends. The image is mirror-padded so that, as with ``scipy.ndimage``'s
    default, nothing leaks across the image border through the Fourier blur's periodic boundary.
    """
    size = params.size
    sigma = params.blur_sigma * np.array(_PSF_SCALE) * rng.uniform(0.9, 1.25)
    glow_sigma = np.hypot(sigma, _GLOW_SIGMA)
    pad = int(np.ceil(3 * glow_sigma.max()))
    padded_size = fft.next_fast_len(size + 2 * pad, real=True)
    shape = (padded_size, padded_size)
    transfer = (1 - _GLOW[:, None, None]) * _gaussian_transfer(shape, sigma)
    transfer += _GLOW[:, None, None] * _gaussian_transfer(shape, glow_sigma)
    padding = ((0, 0), (pad, padded_size - size - pad), (pad, padded_size - size - pad))
    padded = np.pad(np.stack(structures).astype(np.float32), padding, mode="symmetric")
    blurred = fft.irfft2(fft.rfft2(padded) * transfer, s=shape)
    return blurred[:, pad : pad + size, pad : pad + size]


def _photons(rng: np.random.Generator, blurred: np.ndarray, params: SyntheticCellsParams) -> np.ndarray:
    """Expected photons per pixel: exposure, uneven illumination and, for fluorescence, background.

    Fluorescence excitation falls off towards the field's edges (flat-field vignetting) and sits on
    a smooth, uneven autofluorescence background; brightfield illumination varies strongly and
    multiplicatively, which is what defeats a global threshold on it.
    """
    size = params.size
    yy, xx = np.indices((size, size), dtype=np.float32) / size
    centre = rng.uniform(0.3, 0.7, size=2)
    vignette = ((yy - centre[0]) ** 2 + (xx - centre[1]) ** 2) / 0.5
    flat_field = 1 - params.illumination_unevenness / 3 * vignette
    exposure = _PHOTONS * params.photon_scale * rng.uniform(0.75, 1.3, size=len(_PHOTONS))
    photons = np.empty(blurred.shape)
    for c, background in enumerate(_BACKGROUND):
        uneven = background * (1 + 0.8 * _smooth_field(rng, size))
        photons[c] = exposure[c] * (flat_field * blurred[c] + uneven)
    illumination = 1 + params.illumination_unevenness * _smooth_field(rng, size)
    photons[-1] = exposure[-1] * illumination * blurred[-1]
    return np.maximum(photons, 0)


def _camera(rng: np.random.Generator, photons: np.ndarray, params: SyntheticCellsParams) -> np.ndarray:
    """Shot noise on the photon counts, read noise, gain and offset, quantised to the ADC range in uint16."""
    electrons = rng.poisson(photons).astype(np.float32)
    electrons += params.read_noise * rng.standard_normal(photons.shape, dtype=np.float32)
    adu = electrons * np.float32(2.0 ** (params.bit_depth - 12)) + params.camera_offset
    return np.clip(np.rint(adu, out=adu), 0, 2**params.bit_depth - 1, out=adu).astype(np.uint16)


def generate_image(rng: np.random.Generator, params: SyntheticCellsParams) -> tuple[np.ndarray, np.ndarray]:
    """One field of view: image uint16 (5, H, W) in CHANNEL_NAMES order and instances int32 (H, W).

    Instances are 0 for background and 1..n for cells. Everything random comes from ``rng``, so the
    same generator state always gives the same field.
    """
    layout = _layout(rng, params)
    structures = [
        _render_nucleus(rng, layout),
        _render_cytoplasm(rng, layout, params.dim_cell_fraction),
        _render_membrane(rng, layout),
        _render_mitochondria(rng, layout),
        _render_brightfield(rng, layout),
    ]
    photons = _photons(rng, _optics(rng, structures, params), params)
    return _camera(rng, photons, params), layout.labels


def generate_cells(
    num_images: int, seed: int, split: str = "train", params: SyntheticCellsParams | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Stack of images uint16 (N, 5, H, W) and instances int32 (N, H, W) for one split.

    Image i is drawn from ``np.random.default_rng([seed, SPLIT_KEYS[split], i])``, so it is the same
    whatever ``num_images`` is, and train, val and test never share an image.
    """
    if split not in SPLIT_KEYS:
        raise ConfigError(f"split must be one of {', '.join(SPLIT_KEYS)}, got '{split}'.")
    if isinstance(num_images, bool) or not isinstance(num_images, (int, np.integer)) or num_images < 1:
        raise ConfigError(f"num_images must be an integer >= 1, got {num_images!r}.")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ConfigError(f"seed must be a non-negative integer, got {seed!r}.")
    params = params or SyntheticCellsParams()
    fields = [
        generate_image(np.random.default_rng([seed, SPLIT_KEYS[split], i]), params) for i in range(num_images)
    ]
    return np.stack([image for image, _ in fields]), np.stack([labels for _, labels in fields])
