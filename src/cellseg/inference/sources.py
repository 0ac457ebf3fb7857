"""Images to predict, read a tile at a time: whole slides and mosaics need not fit in memory.

An uncompressed TIFF (what microscopes, Fiji and tifffile write by default, OME-TIFF included) is read
in place: each read maps the file, copies the rows and columns asked for and unmaps it again, so pages
read do not stay resident. With the optional ``zarr`` extra, compressed or tiled TIFFs (through
tifffile's zarr store) and OME-Zarr images (``.zarr`` folders) are read a chunk at a time; other files
(PNG, JPG, compressed TIFFs without zarr) are decoded whole first.
Normalisation ranges (percentiles, min/max) are measured once per image, on every pixel up to
``sample_pixels`` per channel and on a regular grid of about that many pixels above, and every tile is
scaled with them, so tiles of one image are scaled alike and an image up to that size is scaled
exactly as when it is normalised whole.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from cellseg.data.io import FOLDER_SUFFIXES, open_zarr, plane_axes, read_planes
from cellseg.errors import ConfigError
from cellseg.inference.inputs import InputPipeline, images_in_file, split_planes
from cellseg.inference.tiling import TileIndex

log = logging.getLogger(__name__)

#: Pixels per channel measured for the normalisation range: every pixel of images up to 4096 x 4096.
DEFAULT_SAMPLE_PIXELS = 4096 * 4096
#: Rows copied per read while measuring (bounds the memory the measurement itself takes).
_ROWS_PER_READ = 256


def check_sample_pixels(value: object) -> int:
    """``normalization_pixels``: a whole number of pixels, at least 1024 (a 32 x 32 grid)."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1024:
        raise ConfigError(
            f"normalization_pixels must be a whole number of pixels >= 1024, got {value!r} "
            f"(default {DEFAULT_SAMPLE_PIXELS}: every pixel of images up to 4096 x 4096)."
        )
    return value


class Planes:
    """The planes (P, H, W) of a file, read by region."""

    shape: tuple[int, int, int]
    dtype: np.dtype

    def read(self, plane: int, rows: slice, cols: slice) -> np.ndarray:
        """Plane ``plane``'s pixels in ``rows`` x ``cols`` (h, w), native dtype, a copy."""
        raise NotImplementedError


@dataclass
class ArrayPlanes(Planes):
    """Planes already decoded into memory."""

    array: np.ndarray

    def __post_init__(self) -> None:
        self.shape = tuple(self.array.shape)  # type: ignore[assignment]
        self.dtype = self.array.dtype

    def read(self, plane: int, rows: slice, cols: slice) -> np.ndarray:
        return np.array(self.array[plane, rows, cols])


class _AxesPlanes(Planes):
    """Planes of an array stored with named axes (TIFF series, OME-Zarr): every axis but Y and X,
    flattened in order, numbers the planes."""

    def __init__(
        self, stored_shape: tuple[int, ...], dtype: np.dtype, axes: str, channels_inner: bool = False
    ) -> None:
        self.axes, self.stored_shape = axes, stored_shape
        self._y, self._x = axes.index("Y"), axes.index("X")
        self._outer = plane_axes(axes, channels_inner)
        self._outer_sizes = tuple(stored_shape[i] for i in self._outer)
        self.shape = (math.prod(self._outer_sizes), stored_shape[self._y], stored_shape[self._x])
        self.dtype = np.dtype(dtype).newbyteorder("=")

    def _index(self, plane: int, rows: slice, cols: slice) -> tuple[int | slice, ...]:
        index: list[int | slice] = [0] * len(self.axes)
        index[self._y], index[self._x] = rows, cols
        for axis, position in zip(self._outer, np.unravel_index(plane, self._outer_sizes), strict=True):
            index[axis] = int(position)
        return tuple(index)

    def _oriented(self, region: np.ndarray) -> np.ndarray:
        region = np.asarray(region, dtype=self.dtype)
        return region.T if self._x < self._y else region


class TiffPlanes(_AxesPlanes):
    """The planes of an uncompressed, contiguous TIFF series, mapped from the file only while read."""

    def __init__(
        self, path: Path, offset: int, stored_shape: tuple[int, ...], dtype: np.dtype, axes: str
    ) -> None:
        super().__init__(stored_shape, dtype, axes)
        self.path, self.offset, self.stored_dtype = path, offset, dtype

    def read(self, plane: int, rows: slice, cols: slice) -> np.ndarray:
        mapped = np.memmap(self.path, self.stored_dtype, "r", self.offset, self.stored_shape)
        region = np.array(mapped[self._index(plane, rows, cols)], dtype=self.dtype)
        del mapped
        return self._oriented(region)


class ZarrPlanes(_AxesPlanes):
    """The planes of a chunked array (an OME-Zarr image, or a compressed TIFF through tifffile's zarr
    store): a read decodes only the chunks it touches."""

    def __init__(self, array: Any, axes: str, keep_open: Any = None, channels_inner: bool = False) -> None:
        super().__init__(tuple(array.shape), array.dtype, axes, channels_inner)
        self.array, self._store = array, keep_open  # the TIFF store holds the file open while in use

    def read(self, plane: int, rows: slice, cols: slice) -> np.ndarray:
        return self._oriented(self.array[self._index(plane, rows, cols)])


def _zarr_available() -> bool:
    try:
        import zarr  # noqa: F401
    except ImportError:
        return False
    return True


def open_planes(path: Path) -> Planes:
    """A file's planes, read in place where the file allows it (uncompressed TIFF; with the zarr extra,
    also compressed or tiled TIFF and OME-Zarr), else decoded whole."""
    suffix = path.suffix.lower()
    if suffix in FOLDER_SUFFIXES:
        array, axes = open_zarr(path)
        return ZarrPlanes(array, axes, channels_inner=True)
    if suffix in (".tif", ".tiff"):
        import tifffile

        with tifffile.TiffFile(path) as tif:
            series = tif.series[0]
            axes, offset, shape = series.axes, series.dataoffset, tuple(series.shape)
            named = "Y" in axes and "X" in axes and len(axes) == len(shape)
            if offset is not None and named:
                dtype = np.dtype(series.dtype).newbyteorder(tif.byteorder)
                return TiffPlanes(path, int(offset), shape, dtype, axes)
        if named and _zarr_available():
            import zarr

            store = tifffile.imread(path, aszarr=True)
            return ZarrPlanes(zarr.open(store, mode="r"), axes, keep_open=store)
        log.info(
            "%s: compressed or not contiguous, so it is decoded whole before prediction "
            '(pip install "cellseg[zarr]" reads it a tile at a time)',
            path,
        )
    return ArrayPlanes(read_planes(path))


@dataclass
class SourceImage:
    """One image (C planes from ``first``) of a file, with the normalisation ranges of its channels."""

    planes: Planes
    first: int
    channels: int
    pipeline: InputPipeline
    ranges: dict[int, tuple[float, float] | None] = field(default_factory=dict)

    @property
    def shape(self) -> tuple[int, int]:
        return self.planes.shape[1], self.planes.shape[2]

    def measure(self, sample_pixels: int = DEFAULT_SAMPLE_PIXELS) -> SourceImage:
        """Measures the normalisation range of each channel the model reads (see the module docstring)."""
        normalization = self.pipeline.normalization
        for index in sorted(self.pipeline.channels.channels_used):
            if normalization.method == "meanstd":
                self.ranges[index] = None
            elif normalization.method == "minmax":  # cheap to make exact: every pixel, in row chunks
                parts = [(float(c.min()), float(c.max())) for c in self._chunks(index, 1)]
                self.ranges[index] = (min(p[0] for p in parts), max(p[1] for p in parts))
            else:
                step = max(1, math.ceil(math.sqrt(self.shape[0] * self.shape[1] / sample_pixels)))
                sample = np.concatenate([c.ravel() for c in self._chunks(index, step)])
                self.ranges[index] = normalization.range_of(sample.astype(np.float32, copy=False))
        return self

    def pixels(self) -> np.ndarray:
        """The whole source image (C, H, W) in its own values (for per-cell intensity measurements)."""
        every = slice(None)
        return np.stack([self.planes.read(self.first + c, every, every) for c in range(self.channels)])

    def _chunks(self, index: int, step: int) -> list[np.ndarray]:
        """Every ``step``-th row and column of channel ``index``, read a band of rows at a time."""
        height = self.shape[0]
        band = _ROWS_PER_READ * step
        return [
            self.planes.read(
                self.first + index, slice(y, min(y + band, height), step), slice(None, None, step)
            )
            for y in range(0, height, band)
        ]

    def region(self, index: TileIndex) -> torch.Tensor:
        """Model input (C_in, h, w) float32 of the image rows and columns of a tile (slices or index
        arrays, as :func:`~cellseg.inference.tiling.tile_index` gives them); measures the normalisation
        ranges first if :meth:`measure` has not been called."""
        if not self.ranges:
            self.measure()
        rows, cols = index
        row_span, row_take = _bounds(rows)
        col_span, col_take = _bounds(cols)
        used = self.pipeline.channels.channels_used
        height, width = row_span.stop - row_span.start, col_span.stop - col_span.start
        source = np.zeros((self.channels, height, width), dtype=self.planes.dtype)
        for channel in used:
            source[channel] = self.planes.read(self.first + channel, row_span, col_span)
        if row_take is not None or col_take is not None:
            source = source[:, row_take if row_take is not None else slice(None)]
            source = source[:, :, col_take if col_take is not None else slice(None)]
        normalization = self.pipeline.normalization

        def normalize(plane: np.ndarray, channel: int) -> np.ndarray:
            return normalization.scale(plane, channel, self.ranges[channel])

        return torch.from_numpy(self.pipeline.channels.apply(source, normalize, training=False))


def _bounds(index: slice | np.ndarray) -> tuple[slice, np.ndarray | None]:
    """The contiguous range an index reads, and the positions within it to take (None: all of it)."""
    if isinstance(index, slice):
        return index, None
    start = int(index.min())
    return slice(start, int(index.max()) + 1), index - start


def source_images(path: Path, pipeline: InputPipeline, pages: str) -> list[SourceImage]:
    """The images of a file for ``pipeline``'s channels (see :mod:`cellseg.inference.inputs` for
    ``pages``), read lazily where the file allows it."""
    channels = len(pipeline.channel_names)
    planes = open_planes(path)
    if isinstance(planes, ArrayPlanes):  # colour files' alpha and gray-as-RGB rules apply
        images = split_planes(planes.array, channels, pages, path)
        return [SourceImage(ArrayPlanes(image), 0, channels, pipeline) for image in images]
    count = images_in_file(planes.shape[0], channels, pages, path)
    return [SourceImage(planes, i * channels, channels, pipeline) for i in range(count)]
