"""New images in, model input out: the same channels and normalisation the checkpoint was trained with.

A file's planes (TIFF pages and channels, or PNG/JPG colours) become images of the checkpoint's C
source channels (``pages``):

- ``channels``: the file is one image and its P planes are its channels (P must equal C);
- ``images``: each group of C consecutive planes is one image (a stack of slices; P a multiple of C);
- ``auto`` (default): one image when P == C; otherwise a TIFF or OME-Zarr whose P is a multiple of C is a stack
  (ISBI's 30-page volume for a 1-channel model). A PNG/JPG is always one image; a gray image saved as
  RGB (three equal colour planes) is read as one gray channel, and the alpha plane of an RGBA (or
  gray+alpha) file is left out for a model of three (one) channels.
"""

from __future__ import annotations

import glob
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from cellseg.data.io import COLOUR_SUFFIXES, IMAGE_SUFFIXES, images_in_folder, is_image_path, probe_planes
from cellseg.data.pipeline.channels import BoundChannels, ChannelStrategy
from cellseg.data.pipeline.normalize import Normalization
from cellseg.errors import ConfigError, DataError

PAGE_MODES = ("auto", "channels", "images")
#: Formats whose planes may be a stack of images (TIFF pages, OME-Zarr z-slices and time points).
_STACKS = (".tif", ".tiff", ".zarr")


def expand_inputs(spec: str | Sequence[str]) -> list[Path]:
    """Image files named by ``spec``: a file, a folder (its images, sorted by name), a glob, or a list of them."""
    if not isinstance(spec, str):
        return [path for item in spec for path in expand_inputs(str(item))]
    path = Path(spec).expanduser()
    if is_image_path(path):  # a file, or an image stored as a folder (.zarr)
        return [path]
    if path.is_dir():
        files = images_in_folder(path)
        if not files:
            raise DataError(f"input folder '{path}' holds no images ({', '.join(IMAGE_SUFFIXES)}).")
        return files
    if path.is_file():
        return [path]
    if glob.has_magic(spec):
        images = sorted(Path(p) for p in glob.glob(str(path), recursive=True) if is_image_path(Path(p)))
        if not images:
            raise DataError(f"input pattern '{spec}' matches no image files ({', '.join(IMAGE_SUFFIXES)}).")
        return images
    raise DataError(f"input '{spec}' does not exist (give an image file, a folder of images or a glob).")


def _has_extra_alpha(num_planes: int, channels: int, path: Path) -> bool:
    """A PNG/JPG with an alpha plane (gray+alpha, RGBA) for a model of its colour planes only."""
    return path.suffix.lower() in COLOUR_SUFFIXES and num_planes in (2, 4) and num_planes == channels + 1


def images_in_file(num_planes: int, channels: int, pages: str, path: Path) -> int:
    """How many images of ``channels`` planes the file holds; a DataError when its planes do not fit."""
    if pages not in PAGE_MODES:
        raise ConfigError(f"pages is '{pages}'; expected one of {', '.join(PAGE_MODES)}.")
    may_be_stack = path.suffix.lower() in _STACKS
    one_image = pages == "channels" or (pages == "auto" and (num_planes == channels or not may_be_stack))
    gray_as_rgb = not may_be_stack and channels == 1 and num_planes == 3
    if one_image and (num_planes == channels or gray_as_rgb or _has_extra_alpha(num_planes, channels, path)):
        return 1
    if not one_image and num_planes % channels == 0:
        return num_planes // channels
    raise DataError(
        f"{path}: has {num_planes} plane(s) but the checkpoint expects images of {channels} channel(s)"
        + (" per image (a stack's plane count must be a multiple of it)" if pages != "channels" else "")
        + "; give images with the channels the model was trained on, or set pages=channels|images."
    )


def split_planes(planes: np.ndarray, channels: int, pages: str, path: Path) -> list[np.ndarray]:
    """The (C, H, W) images held by a file's planes (P, H, W) (see the module docstring)."""
    count = images_in_file(planes.shape[0], channels, pages, path)
    if count == 1 and _has_extra_alpha(planes.shape[0], channels, path):
        return [planes[:channels]]  # alpha is not an intensity the model was trained on
    if count == 1 and planes.shape[0] != channels:  # an RGB file of a gray image
        if not (np.array_equal(planes[0], planes[1]) and np.array_equal(planes[0], planes[2])):
            raise DataError(
                f"{path}: is a colour image but the checkpoint expects 1 channel; convert it to gray "
                "or use a model trained on colour images."
            )
        return [planes[:1]]
    return [planes[i * channels : (i + 1) * channels] for i in range(count)]


def check_inputs(files: Sequence[Path], channels: int, pages: str) -> list[tuple[int, int, int]]:
    """(images, H, W) of every file from its header: every bad file is reported before any prediction."""
    shapes = []
    for path in files:
        num_planes, height, width = probe_planes(path)
        shapes.append((images_in_file(num_planes, channels, pages, path), height, width))
    return shapes


@dataclass(frozen=True)
class InputPipeline:
    """Source image (C, H, W) of any dtype to model input: the checkpoint's channel specs and normalisation."""

    channels: BoundChannels
    normalization: Normalization

    @classmethod
    def from_pipeline(
        cls, pipeline: Mapping[str, Any], channel_names: Sequence[str] | None = None
    ) -> InputPipeline:
        """The checkpoint's pipeline bound to ``channel_names``: the planes of the images to predict, by
        default the training images' (another data set's names when evaluating on new data)."""
        names = tuple(channel_names or pipeline["channel_names"])
        return cls(
            ChannelStrategy(specs=list(pipeline["channels"])).bind(names),
            Normalization(**dict(pipeline.get("normalization") or {})),
        )

    @property
    def channel_names(self) -> tuple[str, ...]:
        return self.channels.channel_names

    def __call__(self, image: np.ndarray) -> np.ndarray:
        return self.channels.apply(image, self.normalization, training=False)
