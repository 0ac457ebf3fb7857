"""The files of a model zoo package besides the weights: the test input and the output cellseg itself
computes for it, a cover picture and the README a consumer shows."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from scipy import ndimage as ndi

from cellseg import __version__
from cellseg.data.io import read_planes
from cellseg.data.pipeline.normalize import Normalization
from cellseg.errors import DataError
from cellseg.inference.checkpoint import LoadedModel
from cellseg.inference.inputs import InputPipeline, split_planes

#: Largest side of the test input: big enough to show cells, small enough for a quick model test.
MAX_TEST_SIDE = 512


@dataclass(frozen=True)
class AxisSizes:
    """The H and W a package accepts: ``minimum + k * step`` (any k >= 0), or one fixed size."""

    minimum: tuple[int, int]
    step: int
    fixed: bool

    def largest_within(self, height: int, width: int) -> tuple[int, int]:
        """The largest accepted (H, W) no larger than the image and MAX_TEST_SIDE."""
        if self.fixed:
            return self.minimum
        sides = []
        for limit, low in zip((height, width), self.minimum, strict=True):
            span = min(limit, MAX_TEST_SIDE) - low
            sides.append(low + (span // self.step) * self.step if span >= 0 else -1)
        return sides[0], sides[1]


def synthetic_sample(channels: int, side: int = 256) -> np.ndarray:
    """Smooth seeded noise (C, side, side) in a 12-bit range: a test input when no sample image is given."""
    rng = np.random.default_rng(0)
    noise = rng.random((channels, side, side))
    smooth = np.stack([ndi.gaussian_filter(plane, 6.0) for plane in noise])
    smooth = (smooth - smooth.min()) / max(float(np.ptp(smooth)), 1e-12)
    return (smooth * 4000.0).astype(np.float32)


def read_sample(path: Path, channel_names: Sequence[str]) -> np.ndarray:
    """The first image (C, H, W) of ``path`` with the checkpoint's source channels, read as predict does."""
    return split_planes(read_planes(path), len(channel_names), "auto", path)[0]


def crop_sample(image: np.ndarray, sizes: AxisSizes, source: str) -> np.ndarray:
    """The centre of ``image`` (C, H, W) at the largest size the package accepts."""
    height, width = sizes.largest_within(image.shape[1], image.shape[2])
    if height < 1 or width < 1 or height > image.shape[1] or width > image.shape[2]:
        raise DataError(
            f"{source}: is {image.shape[1]} x {image.shape[2]} pixels; the package's test input must be "
            f"at least {sizes.minimum[0]} x {sizes.minimum[1]}. Give a larger sample=<image>."
        )
    top, left = (image.shape[1] - height) // 2, (image.shape[2] - width) // 2
    return np.ascontiguousarray(image[:, top : top + height, left : left + width])


def cellseg_prediction(model: LoadedModel, image: np.ndarray) -> np.ndarray:
    """(1, K + R, H, W): cellseg's own normalisation and channels, the network, softmax over the classes.

    The package's expected test output: the model test then checks the spec's preprocessing and each
    exported weight file against cellseg itself, not against the exported network.
    """
    normalised = InputPipeline.from_pipeline(model.pipeline)(image)
    with torch.no_grad():
        outputs = model.net.float().eval()(torch.from_numpy(normalised)[None])
    classes = len(model.class_names)
    probabilities = torch.softmax(outputs[:, :classes], dim=1)
    return torch.cat([probabilities, outputs[:, classes:]], dim=1).numpy().astype(np.float32)


def write_cover(path: Path, image: np.ndarray, prediction: np.ndarray) -> None:
    """The input's first channel beside p(foreground) = 1 - p(background): the 2:1 picture of the model."""
    import matplotlib
    import matplotlib.image

    gray = Normalization()(image[0])  # the default percentile stretch, as training shows it
    foreground = np.clip(1.0 - prediction[0, 0], 0.0, 1.0)
    left = np.repeat(gray[..., None], 3, axis=2)
    right = matplotlib.colormaps["magma"](foreground)[..., :3]
    picture = np.concatenate([left, right], axis=1)
    matplotlib.image.imsave(path, picture)


def readme_text(
    model: LoadedModel,
    name: str,
    description: str,
    inputs: Sequence[str],
    outputs: Sequence[str],
    notes: Sequence[str],
) -> str:
    """The package's documentation: what goes in, what comes out, how to open it, how it was trained."""
    hparams: dict[str, Any] = model.hparams
    arch = (hparams.get("model") or {}).get("arch", "unknown")
    target = (model.pipeline.get("target") or {}).get("kind", "classes")
    normalization = model.pipeline.get("normalization") or {}
    lines = [
        f"# {name}",
        "",
        description,
        "",
        "## Input",
        "",
        f"One image with the planes {', '.join(inputs)} (in this order), any size the package allows. "
        f"Each plane is normalised by the package's preprocessing ({normalization.get('method', 'percentile')}, "
        "as in training).",
        "",
        "## Output",
        "",
        f"One tensor with the channels {', '.join(outputs)}: the class probabilities (softmax), then any "
        "regression maps of the target.",
        "",
        "## Use",
        "",
        "- Fiji: deepImageJ's *DeepImageJ Install Model* installs this zip (from a local file), "
        "*DeepImageJ Run* runs it (TorchScript weights).",
        "- ilastik: the *Neural Network Classification* workflow loads the zip; QuPath: the bioimage.io "
        "extension reads it.",
        "- Python and napari: `bioimageio.core.predict(model='<this zip>', inputs=image)`.",
        "",
        "## Training",
        "",
        f"Trained with cellseg {__version__}: architecture `{arch}`, target `{target}`, "
        f"epoch {model.epoch}, {model.global_step} optimiser steps; the checkpoint's settings are in "
        "`config.cellseg` of rdf.yaml.",
    ]
    if notes:
        lines += ["", "## What the format cannot express", "", *(f"- {note}" for note in notes)]
    return "\n".join(lines) + "\n"
