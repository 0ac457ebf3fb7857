"""Decoding microscope image files into arrays (P, H, W) in their native dtype.

``P`` is every plane of the file: the pages of a multi-page TIFF, its channels, the colour
channels of a PNG/JPG (red, green, blue, then alpha where the file has one; 8 or 16 bit as stored), or
every (t, c, z) plane of an OME-Zarr image's full resolution (a ``.zarr`` folder; the optional ``zarr``
extra).
Whether planes are channels of one image or separate images (slices of a stack) is for the caller to
decide.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from cellseg.errors import DataError

IMAGE_SUFFIXES = (".tif", ".tiff", ".png", ".jpg", ".jpeg", ".zarr")
#: Images stored as a folder (OME-Zarr, or a plain zarr array) rather than a file.
FOLDER_SUFFIXES = (".zarr",)
#: Formats whose planes are colours (gray or RGB, then alpha where present), not free channels.
COLOUR_SUFFIXES = (".png", ".jpg", ".jpeg")

#: PNG colour types (the IHDR byte after the bit depth) whose planes OpenCV returns as BGRA.
_PNG_GRAY_ALPHA = 4
#: Planes per Pillow mode, as :func:`read_planes` returns them (palettes become RGB, or RGBA with transparency).
_MODE_PLANES = {"LA": 2, "La": 2, "RGB": 3, "YCbCr": 3, "CMYK": 3, "RGBA": 4, "RGBa": 4, "PA": 4}


def _read_tiff(path: Path) -> tuple[np.ndarray, str]:
    import tifffile

    with tifffile.TiffFile(path) as tif:
        series = tif.series[0]
        return series.asarray(), series.axes


def is_image_path(path: Path) -> bool:
    """An image file, or a folder that is one image (``.zarr``)."""
    if path.suffix.lower() in FOLDER_SUFFIXES:
        return path.is_dir()
    return path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES


def open_zarr(path: Path) -> tuple[Any, str]:
    """The full-resolution array of an OME-Zarr image (NGFF 0.4 or 0.5) or a plain zarr array, with one
    axis letter per dimension (``TCZYX`` as the metadata names them; a plain array's last two are YX)."""
    try:
        import zarr
    except ImportError as error:
        raise DataError(
            f'{path}: reading zarr images needs the zarr package: pip install "cellseg[zarr]".'
        ) from error
    node = zarr.open(str(path), mode="r")
    if hasattr(node, "shape"):  # a plain array; an OME-Zarr image is a group
        return node, "Q" * (node.ndim - 2) + "YX"
    attrs = dict(node.attrs)
    multiscales = attrs.get("ome", attrs).get("multiscales")
    if not multiscales:
        raise DataError(f"{path}: a zarr group without OME-Zarr 'multiscales' metadata; give an image array.")
    scale = multiscales[0]
    array = node[scale["datasets"][0]["path"]]
    names = [a["name"] if isinstance(a, dict) else str(a) for a in scale.get("axes", [])]
    axes = (
        "".join(n.upper()[:1] for n in names) if len(names) == array.ndim else "Q" * (array.ndim - 2) + "YX"
    )
    if "Y" not in axes or "X" not in axes:
        raise DataError(f"{path}: its axes {names} name no y and x; cellseg reads 2-D images.")
    return array, axes


def plane_axes(axes: str, channels_inner: bool = False) -> list[int]:
    """The axes (indices) other than Y and X, in the order that numbers the planes: the file's order,
    with the channel axis moved innermost for ``channels_inner`` (OME-Zarr stores TCZYX, so that a
    stack's consecutive planes are the channels of one z-slice, as in an ImageJ TZCYX TIFF)."""
    outer = [i for i, a in enumerate(axes) if a not in "YX"]
    if channels_inner and "C" in axes:
        outer = [i for i in outer if axes[i] != "C"] + [axes.index("C")]
    return outer


def _planes_first(array: np.ndarray, axes: str, channels_inner: bool = False) -> np.ndarray:
    """(H, W) last, every other axis (pages, channels, samples) flattened in front."""
    if "Y" in axes and "X" in axes and len(axes) == array.ndim:
        order = [*plane_axes(axes, channels_inner), axes.index("Y"), axes.index("X")]
        array = np.transpose(array, order)
    if array.ndim == 2:
        return array[None]
    return array.reshape(-1, *array.shape[-2:])


def image_stem(path: Path) -> str:
    """A file's name without its image suffix, ``.ome.tif`` / ``.ome.tiff`` included."""
    name = path.name
    for suffix in (".ome.tiff", ".ome.tif", ".ome.zarr"):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return path.stem


def images_in_folder(folder: Path) -> list[Path]:
    """The image files of a folder (not its subfolders), sorted by name."""
    if not folder.is_dir():
        raise DataError(f"{folder}: folder not found.")
    return sorted(p for p in folder.iterdir() if is_image_path(p))


def _check_image_path(path: Path) -> None:
    if path.suffix.lower() in FOLDER_SUFFIXES and path.is_dir():
        return
    if not path.is_file():
        raise DataError(f"{path}: file not found.")
    if path.suffix.lower() not in IMAGE_SUFFIXES:
        raise DataError(f"{path}: not an image file cellseg reads (expected {', '.join(IMAGE_SUFFIXES)}).")


def _plane_count(shape: tuple[int, ...], axes: str) -> int:
    if "Y" in axes and "X" in axes and len(axes) == len(shape):
        return int(np.prod([n for n, a in zip(shape, axes, strict=True) if a not in "YX"], dtype=np.int64))
    return int(np.prod(shape[:-2], dtype=np.int64)) if len(shape) > 2 else 1


def probe_planes(path: str | Path) -> tuple[int, int, int]:
    """(P, H, W) of an image file from its header alone, to check many inputs before reading any pixels."""
    path = Path(path)
    _check_image_path(path)
    try:
        if path.suffix.lower() in FOLDER_SUFFIXES:
            array, axes = open_zarr(path)
            shape = tuple(array.shape)
            return _plane_count(shape, axes), int(shape[axes.index("Y")]), int(shape[axes.index("X")])
        if path.suffix.lower() in (".tif", ".tiff"):
            import tifffile

            with tifffile.TiffFile(path) as tif:
                series = tif.series[0]
                shape, axes = tuple(series.shape), series.axes
            if "Y" in axes and "X" in axes:
                height, width = shape[axes.index("Y")], shape[axes.index("X")]
            else:
                height, width = shape[-2:]
            return _plane_count(shape, axes), int(height), int(width)
        from PIL import Image

        with Image.open(path) as image:
            if image.mode == "P":
                bands = 4 if "transparency" in image.info else 3
            else:
                bands = _MODE_PLANES.get(image.mode, 1)
            return bands, image.height, image.width
    except DataError:
        raise
    except Exception as error:
        raise DataError(f"{path}: cannot be read as an image ({type(error).__name__}: {error}).") from error


def _png_colour_type(data: np.ndarray) -> int | None:
    """The colour type from a PNG's header (None for other formats)."""
    return int(data[25]) if data[:8].tobytes() == b"\x89PNG\r\n\x1a\n" and data.size > 25 else None


def _read_png_or_jpeg(path: Path) -> np.ndarray:
    """(P, H, W) at the file's own depth (8 or 16 bit): gray 1 plane, gray+alpha 2, RGB 3, RGBA 4.

    OpenCV decodes 16-bit colour PNGs at full depth (Pillow truncates them to 8 bit); its BGR(A)
    order is turned into RGB(A) here. Alpha is kept as the last plane: select planes with channels=.
    """
    import cv2

    data = np.fromfile(path, dtype=np.uint8)
    array = cv2.imdecode(data, cv2.IMREAD_UNCHANGED) if data.size else None
    if array is None:
        raise DataError(
            f"{path}: cannot be read as an image; the file is truncated, corrupt or not a {path.suffix}."
        )
    if array.ndim == 2:
        return array[None]
    planes = np.moveaxis(array, -1, 0)
    if planes.shape[0] == 3:
        return np.ascontiguousarray(planes[::-1])
    rgba = planes[[2, 1, 0, 3]]
    return np.ascontiguousarray(rgba[[0, 3]] if _png_colour_type(data) == _PNG_GRAY_ALPHA else rgba)


def read_planes(path: str | Path) -> np.ndarray:
    """All planes of an image file as (P, H, W), native dtype (uint8, uint16, float, ...)."""
    path = Path(path)
    _check_image_path(path)
    try:
        if path.suffix.lower() in FOLDER_SUFFIXES:
            array, axes = open_zarr(path)
            return _planes_first(np.asarray(array[...]), axes, channels_inner=True)
        if path.suffix.lower() in (".tif", ".tiff"):
            array, axes = _read_tiff(path)
            return _planes_first(array, axes)
        return _read_png_or_jpeg(path)
    except DataError:
        raise
    except Exception as error:
        raise DataError(f"{path}: cannot be read as an image ({type(error).__name__}: {error}).") from error
