"""Labeling strategies (the ``target`` group): how instance labels become per-pixel training classes.

Every target takes instance ids (H, W) (0 = background, 1..n = cells, -1 = unannotated) and returns
class ids (H, W) int64, with ``ignore_index`` where the input is unannotated. ``from_channel`` first
makes the instances itself, by thresholding one channel of the image (a fluorescent label).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import ndimage as ndi

from cellseg.data.pipeline.channels import ChannelRef, resolve_channel
from cellseg.data.pipeline.normalize import Normalization
from cellseg.errors import ConfigError


class Target:
    """Base: class names, ``ignore_index``, and the instance-to-class mapping."""

    default_names: tuple[str, ...] = ()

    def __init__(self, class_names: Sequence[str] | None = None, ignore_index: int = -100) -> None:
        names = tuple(class_names) if class_names is not None else self.default_names
        if len(names) != len(self.default_names):
            raise ConfigError(
                f"target.class_names of a {type(self).__name__} needs {len(self.default_names)} names "
                f"(like {list(self.default_names)}), got {list(names)}."
            )
        self.class_names = names
        self.ignore_index = int(ignore_index)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def needs_image(self) -> bool:
        """True when the target makes its own instances from the image (no masks needed)."""
        return False

    def classes(self, instances: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def __call__(self, instances: np.ndarray) -> np.ndarray:
        classes = self.classes(np.maximum(instances, 0))
        classes[instances < 0] = self.ignore_index
        return classes

    def describe(self) -> dict:
        return {
            "kind": type(self).__name__,
            "class_names": list(self.class_names),
            "ignore_index": self.ignore_index,
        }


class BinaryTarget(Target):
    """Background (0) versus cell (1): every pixel of any instance is a cell pixel."""

    default_names = ("background", "cell")

    def classes(self, instances: np.ndarray) -> np.ndarray:
        return (instances > 0).astype(np.int64)


def border_pixels(instances: np.ndarray, width: int) -> np.ndarray:
    """Cell pixels within ``width`` pixels (city-block) of background or of another cell."""
    footprint = ndi.generate_binary_structure(2, 1)
    footprint = ndi.iterate_structure(footprint, width)
    high = ndi.maximum_filter(instances, footprint=footprint, mode="nearest")
    low = ndi.minimum_filter(instances, footprint=footprint, mode="nearest")
    return (instances > 0) & ((high != instances) | (low != instances))


class BoundaryTarget(Target):
    """Background (0), cell interior (1) and cell border (2) of ``width`` pixels.

    The border class separates touching cells, so instances can be recovered from the interior by
    connected components or a seeded watershed.
    """

    default_names = ("background", "interior", "border")

    def __init__(
        self, width: int = 2, class_names: Sequence[str] | None = None, ignore_index: int = -100
    ) -> None:
        super().__init__(class_names, ignore_index)
        if isinstance(width, bool) or not isinstance(width, int) or width < 1:
            raise ConfigError(
                f"target.width (border width in pixels) must be an integer >= 1, got {width!r}."
            )
        self.width = width

    def classes(self, instances: np.ndarray) -> np.ndarray:
        classes = (instances > 0).astype(np.int64)
        classes[border_pixels(instances, self.width)] = 2
        return classes

    def describe(self) -> dict:
        return {**super().describe(), "width": self.width}


_THRESHOLDS = ("otsu", "li", "fixed")


class FromChannelTarget(Target):
    """Cells from one channel of the image itself: threshold, remove small objects, fill holes, label.

    For stacks without masks (e.g. a nuclear stain next to label-free brightfield planes): the stain
    becomes the ground truth and must not also be a model input (that would be trivial). The plane is
    normalised (1-99.8 percentile) and smoothed by a Gaussian of ``smooth_sigma`` px, then thresholded by
    Otsu's or Li's method or at ``threshold`` (on the 0..1 normalised scale). ``output`` picks the
    class layout: ``binary`` or ``boundary`` (with ``width``).
    """

    def __init__(
        self,
        channel: ChannelRef,
        method: str = "otsu",
        threshold: float | None = None,
        smooth_sigma: float = 1.0,
        min_size: int = 30,
        fill_holes: bool = True,
        output: str = "binary",
        width: int = 2,
        class_names: Sequence[str] | None = None,
        ignore_index: int = -100,
    ) -> None:
        if output not in ("binary", "boundary"):
            raise ConfigError(f"target.output is '{output}'; expected 'binary' or 'boundary'.")
        self.inner: Target = (
            BinaryTarget(class_names, ignore_index)
            if output == "binary"
            else BoundaryTarget(width, class_names, ignore_index)
        )
        self.default_names = self.inner.default_names
        super().__init__(class_names, ignore_index)
        if method not in _THRESHOLDS:
            raise ConfigError(f"target.method is '{method}'; expected one of {', '.join(_THRESHOLDS)}.")
        if method == "fixed" and (threshold is None or not 0.0 <= threshold <= 1.0):
            raise ConfigError(
                f"target.method=fixed needs target.threshold in [0, 1] (normalised), got {threshold!r}."
            )
        if min_size < 0 or smooth_sigma < 0:
            raise ConfigError(
                f"target.min_size and target.smooth_sigma must be >= 0, got {min_size}, {smooth_sigma}."
            )
        self.channel = channel
        self.method = method
        self.threshold = threshold
        self.smooth_sigma = smooth_sigma
        self.min_size = int(min_size)
        self.fill_holes = bool(fill_holes)
        self.output = output

    @property
    def needs_image(self) -> bool:
        return True

    def channel_index(self, channel_names: Sequence[str]) -> int:
        return resolve_channel(self.channel, channel_names)

    def instances_from_image(self, image: np.ndarray, channel_names: Sequence[str]) -> np.ndarray:
        """Instance ids (H, W) int32 derived from the target channel of ``image`` (C, H, W)."""
        from skimage.filters import threshold_li, threshold_otsu

        plane = Normalization()(image[self.channel_index(channel_names)])
        if self.smooth_sigma > 0:
            plane = ndi.gaussian_filter(plane, self.smooth_sigma)
        if self.method == "fixed":
            level = float(self.threshold)
        else:
            level = float((threshold_otsu if self.method == "otsu" else threshold_li)(plane))
        cells = plane > level
        if self.fill_holes:
            cells = ndi.binary_fill_holes(cells)
        instances, count = ndi.label(cells)
        if self.min_size > 0 and count:
            sizes = np.bincount(instances.ravel())
            small = sizes < self.min_size
            small[0] = False
            instances[small[instances]] = 0
            instances, _ = ndi.label(instances > 0)
        return instances.astype(np.int32)

    def classes(self, instances: np.ndarray) -> np.ndarray:
        return self.inner.classes(instances)

    def describe(self) -> dict:
        return {
            **self.inner.describe(),
            "kind": type(self).__name__,
            "channel": self.channel,
            "method": self.method,
            "threshold": self.threshold,
            "smooth_sigma": self.smooth_sigma,
            "min_size": self.min_size,
            "fill_holes": self.fill_holes,
            "output": self.output,
        }


TARGETS: dict[str, type[Target]] = {
    cls.__name__: cls for cls in (BinaryTarget, BoundaryTarget, FromChannelTarget)
}


def target_from_description(description: dict) -> Target:
    """Rebuild a target from its ``describe()`` (what a checkpoint stores)."""
    import inspect

    options = dict(description)
    kind = options.pop("kind", None)
    if kind not in TARGETS:
        raise ConfigError(
            f"Unknown target kind {kind!r} in the checkpoint; expected one of {', '.join(TARGETS)}."
        )
    accepted = inspect.signature(TARGETS[kind]).parameters
    return TARGETS[kind](**{k: v for k, v in options.items() if k in accepted})
