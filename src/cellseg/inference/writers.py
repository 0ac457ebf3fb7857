"""Writing prediction results: masks (PNG/TIFF), float32 probability TIFFs and instance-label TIFFs.

Every file is written to a temporary name and renamed (``write_atomic``), so an interrupted run never
leaves a half-written image behind. A stack (several images from one input file) is written as one
multi-page TIFF, the format the ISBI challenge expects for submissions.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from cellseg.errors import ConfigError, OutputDirError, RunExistsError
from cellseg.runs import check_writable, is_training_run, run_entries
from cellseg.utils.io import atomic_path, write_atomic

MASK_FORMATS = ("png", "tif")


def write_tiff(path: Path, pages: Sequence[np.ndarray] | np.ndarray, description: str | None = None) -> Path:
    """One page per 2-D array (or a single 2-D array), as a plain (ImageJ-readable) TIFF."""
    import tifffile

    with atomic_path(path) as tmp:
        tifffile.imwrite(tmp, np.asarray(pages), photometric="minisblack", description=description)
    return path


class StreamedTiff:
    """A plain TIFF of known shape and dtype, created up front and filled region by region.

    Uncompressed and contiguous (any reader opens it; BigTIFF when over 4 GB), so a region is a set of
    byte ranges: the file is mapped only while a region is written, and what was written does not stay
    in this process's memory. Write it at a temporary path (:func:`~cellseg.utils.io.atomic_path`).
    """

    def __init__(
        self, path: Path, shape: tuple[int, ...], dtype: np.dtype | type, description: str | None = None
    ) -> None:
        import tifffile

        mapped = tifffile.memmap(
            path, shape=shape, dtype=dtype, photometric="minisblack", description=description
        )
        self.path, self.offset, self.shape, self.dtype = path, mapped.offset, mapped.shape, mapped.dtype
        del mapped

    def write(self, index: tuple[int | slice, ...], values: np.ndarray) -> None:
        mapped = np.memmap(self.path, self.dtype, "r+", self.offset, self.shape)
        mapped[index] = values
        mapped.flush()
        del mapped


def write_png(path: Path, image: np.ndarray) -> Path:
    """A 2-D uint8 or uint16 array as a gray PNG."""
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG")
    write_atomic(path, lambda handle: handle.write(buffer.getvalue()))
    return path


def check_mask_format(mask_format: str) -> str:
    if mask_format not in MASK_FORMATS:
        raise ConfigError(f"mask.format is '{mask_format}'; expected one of {', '.join(MASK_FORMATS)}.")
    return mask_format


def instance_dtype(labels: Sequence[np.ndarray]) -> type[np.integer]:
    """uint16 when every id fits (what Fiji and napari read fastest), else uint32."""
    return np.uint16 if max(int(lab.max(initial=0)) for lab in labels) < 2**16 else np.uint32


def check_output_folder(folder: str | Path, overwrite: bool, ignore: Sequence[str] = ()) -> Path:
    """Refuse a training run's folder, and one that already holds files (besides ``ignore``) unless
    ``overwrite``; nothing is deleted."""
    folder = Path(folder).expanduser()
    if folder.exists() and not folder.is_dir():
        raise OutputDirError(f"output '{folder}' is a file, not a folder; give a folder for the results.")
    check_writable(folder, "results to", "Choose a writable folder with output=<dir>.")
    if is_training_run(folder):
        raise RunExistsError(
            f"output folder '{folder}' is a training run's folder (it holds {', '.join(run_entries(folder))}); "
            "nothing is ever written into a run, whatever overwrite says. Choose another folder, "
            "e.g. output=<run>/predictions."
        )
    if folder.is_dir() and not overwrite:
        present = sorted(p.name for p in folder.iterdir() if p.name not in ignore)
        if present:
            shown = ", ".join(present[:5]) + (", ..." if len(present) > 5 else "")
            raise OutputDirError(
                f"output folder '{folder}' already holds {len(present)} file(s) ({shown}); refusing to "
                "overwrite them. Choose an empty or new folder, or pass overwrite=true to replace files "
                "of the same name (others are kept)."
            )
    return folder
