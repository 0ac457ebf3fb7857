"""Per-cell measurements of an instance segmentation, and per-image summaries, as CSV tables.

Every measurement comes from ``skimage.measure.regionprops_table``, so the numbers are the ones a user gets
from scikit-image (and, within its definitions, from Fiji) and are not re-derived here. Definitions a
reader of the CSV needs:

- ``area_px``: the number of pixels of the cell; ``area_um2 = area_px * pixel_size**2``.
- ``perimeter_px``: scikit-image's ``perimeter``, the length of the contour through the centres of the
  cell's boundary pixels (4-connected boundary, diagonal steps weighted sqrt(2)); it is smaller than the
  pixel-edge length: a 10 x 10 px square has perimeter 36, not 40, and a one-pixel cell has 0.
- ``centroid_y``, ``centroid_x``: row and column of the centre of mass in pixels (0-based, as numpy and
  napari count; Fiji's pixel centres are at +0.5).
- ``equivalent_diameter_px``: the diameter of the circle with the cell's area, sqrt(4 area / pi).
- ``eccentricity``: of the ellipse with the cell's second moments; 0 for a circle or a square, towards 1
  for elongated cells (1 for a one-pixel-wide line).
- ``solidity``: area / area of the convex hull; 1 for convex cells, lower for lobed or crescent ones.
- ``mean_<channel>``, ``max_<channel>``: intensity over the cell's pixels of that plane of the source
  image, in the source's own values (not the normalised network input), so they can be compared with
  measurements in Fiji; ``max_<channel>`` keeps the image's dtype.

Pixel-size columns (``_um``, ``_um2``) appear only when ``pixel_size`` (micrometres per pixel, square
pixels) is given; measurements in pixels are always present. Rows are in increasing label order and keep
the label ids of the segmentation (non-consecutive ids stay as they are), so a row can be found in the
label image. An image with no cell gives every column with zero rows.

CSV conventions: floats are rounded to 4 decimals (4 significant digits below 0.001) so that reruns diff
cleanly; NaN (a mean over zero cells, or NaN pixels in a float image) is written as an empty cell, which
csv/pandas/R/Excel read as missing.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from skimage.measure import regionprops_table

from cellseg.utils.io import write_atomic, write_csv_atomic

#: scikit-image property -> column name (pixel units); order is the CSV's column order.
_GEOMETRY = (
    ("area", "area_px"),
    ("perimeter", "perimeter_px"),
    ("centroid-0", "centroid_y"),
    ("centroid-1", "centroid_x"),
    ("equivalent_diameter_area", "equivalent_diameter_px"),
    ("eccentricity", "eccentricity"),
    ("solidity", "solidity"),
)
_PROPERTIES = (
    "label",
    "area",
    "perimeter",
    "centroid",
    "equivalent_diameter_area",
    "eccentricity",
    "solidity",
    "intensity_mean",
    "intensity_max",
)


def _check_pixel_size(pixel_size: float | None) -> float | None:
    if pixel_size is None:
        return None
    if isinstance(pixel_size, bool) or not isinstance(pixel_size, (int, float, np.number)):
        raise ValueError(
            f"pixel_size is {pixel_size!r}; expected a positive number (micrometres per pixel) or None."
        )
    if not math.isfinite(pixel_size) or pixel_size <= 0:
        raise ValueError(
            f"pixel_size is {pixel_size}; expected a positive number (micrometres per pixel) or None."
        )
    return float(pixel_size)


def check_labels(labels: np.ndarray) -> np.ndarray:
    """A 2-D array of non-negative integer cell ids (0 = background), else a ValueError saying why."""
    labels = np.asarray(labels)
    if labels.ndim != 2:
        raise ValueError(f"labels have shape {labels.shape}; expected a 2-D (H, W) instance-label image.")
    if not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(
            f"labels have dtype {labels.dtype}; expected integer cell ids (0 = background). A boolean "
            "mask has no cells yet: label it first, e.g. with skimage.measure.label."
        )
    if labels.size and labels.min() < 0:
        raise ValueError(
            f"labels hold negative ids (min {labels.min()}); expected 0 (background) or ids >= 1."
        )
    return labels


def image_planes(image: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """``image`` as (C, H, W) planes of the labels' ``shape`` (a 2-D image is one plane)."""
    image = np.asarray(image)
    if image.ndim == 2:
        image = image[None]
    if image.ndim != 3:
        raise ValueError(f"image has shape {image.shape}; expected (H, W) or channels first (C, H, W).")
    if image.shape[1:] != tuple(shape):
        hint = (
            " (it looks channels-last; give (C, H, W))"
            if image.shape[:2] == tuple(shape) and image.shape[2] <= 4
            else ""
        )
        raise ValueError(
            f"image planes are {image.shape[1]} x {image.shape[2]} px (image shape {image.shape}) but the "
            f"labels are {shape[0]} x {shape[1]} px; expected image (C, H, W) with the labels' H, W{hint}."
        )
    if image.dtype == bool:
        image = image.astype(np.uint8)
    if not np.issubdtype(image.dtype, np.integer) and not np.issubdtype(image.dtype, np.floating):
        raise ValueError(f"image has dtype {image.dtype}; expected integer or floating-point intensities.")
    return image


def measurement_columns(channel_names: Sequence[str], pixel_size: float | None = None) -> list[str]:
    """The column names of ``measure_cells``, in order (also the header of a CSV of zero cells)."""
    columns = ["label"]
    for _, name in _GEOMETRY:
        columns.append(name)
        if pixel_size is not None and name == "area_px":
            columns.append("area_um2")
        elif pixel_size is not None and name in ("perimeter_px", "equivalent_diameter_px"):
            columns.append(name.removesuffix("_px") + "_um")
    for channel in channel_names:
        columns += [f"mean_{channel}", f"max_{channel}"]
    return columns


def measure_cells(
    labels: np.ndarray, image: np.ndarray, channel_names: Sequence[str], pixel_size: float | None = None
) -> dict[str, np.ndarray]:
    """One entry per cell (in label order) for every column of ``measurement_columns``.

    ``image`` is the source image, (H, W) or (C, H, W) with ``len(channel_names) == C``, in its own
    values; ``pixel_size`` is in micrometres per pixel and adds the ``_um``/``_um2`` columns.
    """
    labels = check_labels(labels)
    planes = image_planes(image, labels.shape)
    pixel_size = _check_pixel_size(pixel_size)
    if isinstance(channel_names, str):
        raise ValueError(f"channel_names is the string {channel_names!r}; expected a list of names.")
    channel_names = [str(name) for name in channel_names]
    if len(channel_names) != planes.shape[0]:
        raise ValueError(
            f"{len(channel_names)} channel name(s) {channel_names} for an image of {planes.shape[0]} "
            f"channel(s) (shape {np.shape(image)}); expected one name per channel."
        )
    duplicates = sorted({name for name in channel_names if channel_names.count(name) > 1})
    if duplicates or "" in channel_names:
        raise ValueError(
            f"channel names {channel_names} must be distinct and non-empty (they name the mean_/max_ "
            f"columns); repeated or empty: {duplicates or ['']}."
        )
    props = regionprops_table(labels, np.moveaxis(planes, 0, -1), properties=_PROPERTIES)
    table: dict[str, np.ndarray] = {"label": np.asarray(props["label"], dtype=np.int64)}
    for prop, name in _GEOMETRY:
        values = np.asarray(props[prop], dtype=np.float64)
        table[name] = values.astype(np.int64) if name == "area_px" else values
        if pixel_size is not None and name == "area_px":
            table["area_um2"] = values * pixel_size**2
        elif pixel_size is not None and name in ("perimeter_px", "equivalent_diameter_px"):
            table[name.removesuffix("_px") + "_um"] = values * pixel_size
    for index, channel in enumerate(channel_names):
        table[f"mean_{channel}"] = np.asarray(props[f"intensity_mean-{index}"], dtype=np.float64)
        # regionprops returns float64; the maximum is one of the pixel values, so its dtype is exact.
        table[f"max_{channel}"] = np.asarray(props[f"intensity_max-{index}"]).astype(planes.dtype)
    return table


def _rounded(value: float) -> float:
    """4 decimals, or 4 significant digits for magnitudes below 0.001 (small float intensities)."""
    if not math.isfinite(value) or value == 0:
        return value
    return round(value, max(4, 3 - math.floor(math.log10(abs(value)))))


def csv_value(value: Any) -> Any:
    """A numpy or Python scalar as a plain Python int, rounded float (see ``_rounded``) or string."""
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, float):
        return _rounded(value)
    return value


def summarise(image_name: str, table: Mapping[str, np.ndarray], pixel_size: float | None) -> dict[str, Any]:
    """One summary row: ``image``, ``cell_count``, ``mean_area_px``, ``median_area_px`` (and ``_um2``).

    With zero cells the means and medians are NaN (an empty cell in the CSV), not 0: no cell has no
    typical size. The µm² values come from ``area_px`` and ``pixel_size``, so a table measured without
    a pixel size can still be summarised with one.
    """
    pixel_size = _check_pixel_size(pixel_size)
    if "area_px" not in table:
        raise ValueError(f"table has columns {list(table)}; expected the 'area_px' column of measure_cells.")
    area = np.asarray(table["area_px"], dtype=np.float64)
    count = int(area.size)
    mean = float(area.mean()) if count else math.nan
    median = float(np.median(area)) if count else math.nan
    row: dict[str, Any] = {
        "image": str(image_name),
        "cell_count": count,
        "mean_area_px": _rounded(mean),
        "median_area_px": _rounded(median),
    }
    if pixel_size is not None:
        row["mean_area_um2"] = _rounded(mean * pixel_size**2)
        row["median_area_um2"] = _rounded(median * pixel_size**2)
    return row


def image_names(stem: str, count: int) -> list[str]:
    """Names of a file's images: the stem for one image; ``<stem>_p01``, ... (1-based, as Fiji numbers
    a stack's slices, zero-padded so that files sort in order) for a stack of ``count`` images.

    Used for the ``image`` column of the CSVs and the overlay file names (``<name>.png``)."""
    if count < 1:
        raise ValueError(f"count is {count}; expected at least one image.")
    if count == 1:
        return [stem]
    width = max(2, len(str(count)))
    return [f"{stem}_p{k:0{width}d}" for k in range(1, count + 1)]


def write_measurements(path: str | Path, tables: Sequence[tuple[str, Mapping[str, np.ndarray]]]) -> Path:
    """One CSV for a file's images: a leading ``image`` column, then each image's cells, in order.

    Written atomically. With zero cells in every image the file still has the header (the columns of the
    first table), so that a reader sees the columns and no rows, not an unreadable empty file.
    """
    path = Path(path)
    rows: list[dict[str, Any]] = []
    header = ["image"]
    for name, table in tables:
        columns = list(table)
        header += [c for c in columns if c not in header]
        lengths = {len(table[c]) for c in columns}
        if len(lengths) > 1:
            raise ValueError(f"table of image '{name}' has columns of different lengths {sorted(lengths)}.")
        for i in range(lengths.pop() if lengths else 0):
            rows.append({"image": name, **{c: csv_value(table[c][i]) for c in columns}})
    if rows:
        write_csv_atomic(path, rows)
    else:
        buffer = io.StringIO()
        csv.writer(buffer).writerow(header)  # quotes names with commas, as DictWriter does
        write_atomic(path, lambda handle: handle.write(buffer.getvalue().encode()))
    return path


def write_summary(path: str | Path, rows: Sequence[Mapping[str, Any]]) -> Path:
    """The ``summarise`` rows of all images as one CSV (atomically; NaN as empty cells)."""
    path = Path(path)
    if not rows:
        raise ValueError("no summary rows to write; expected one row per measured image.")
    write_csv_atomic(path, [{k: csv_value(v) for k, v in row.items()} for row in rows])
    return path
