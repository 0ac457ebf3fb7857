"""Labeling strategies (the ``target`` group): how instance labels become what the network learns, and
how its outputs become instances again.

Every target takes instance ids (H, W) (0 = background, 1..n = cells, -1 = unannotated) and returns
class ids (H, W) int64, with ``ignore_index`` where the input is unannotated. ``from_channel`` first
makes the instances itself, by thresholding one channel of the image (a fluorescent label).
``distance`` and ``flows`` add regression maps (:meth:`Target.regression`) to the classes: the network's
output layout (:class:`~cellseg.outputs.OutputLayout`) is the target's :attr:`Target.outputs`.

:meth:`Target.decode` turns a predicted image back into instance labels with the target's decoding
settings (``decoding.*``); :meth:`Target.tuning_grid` lists the settings worth tuning on validation.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, ClassVar

import numpy as np
from scipy import ndimage as ndi

from cellseg.data.pipeline.channels import ChannelRef, resolve_channel
from cellseg.data.pipeline.normalize import Normalization
from cellseg.errors import ConfigError
from cellseg.instances import without_small_cells
from cellseg.metrics.instances import instances_from_boundary_classes, instances_from_classes
from cellseg.outputs import OutputLayout

#: Decoding settings: name -> value (thresholds, iteration counts).
Settings = Mapping[str, Any]
#: A target's decoding bound to its settings: class probabilities (K, H, W) and regression maps (R, H, W)
#: or None -> instance ids (H, W).
Decoder = Callable[[np.ndarray, np.ndarray | None], np.ndarray]


class Target:
    """Base: class names, ``ignore_index``, the instance-to-class mapping and the decoding back."""

    default_names: tuple[str, ...] = ()
    #: Names of the regression maps the network outputs after the class logits (none: classes only).
    regression_names: tuple[str, ...] = ()
    #: Decoding settings and their defaults (``target.decoding.<name>``); empty: nothing to set.
    default_decoding: ClassVar[dict[str, Any]] = {}

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
    def outputs(self) -> OutputLayout:
        """The network's output channels for this target."""
        return OutputLayout.of(self.class_names, self.regression_names)

    def regression(self, instances: np.ndarray) -> np.ndarray:
        """Regression maps (R, H, W) float32 of instance ids (H, W), 0 = background; R = 0 by default."""
        return np.zeros((0, *instances.shape), np.float32)

    @property
    def decoding(self) -> dict[str, Any]:
        return dict(getattr(self, "_decoding", self.default_decoding))

    def set_decoding(self, decoding: Settings | None) -> None:
        """Checked decoding settings: known names only, defaults for the ones not given."""
        given = dict(decoding or {})
        unknown = sorted(set(given) - set(self.default_decoding))
        if unknown:
            known = ", ".join(self.default_decoding) or "none"
            raise ConfigError(
                f"Unknown decoding setting(s) {', '.join(unknown)} for {type(self).__name__}; "
                f"its settings: {known}."
            )
        self._decoding = {**self.default_decoding, **given}
        check_decoding(self._decoding)

    def decode(
        self,
        probabilities: np.ndarray,
        regression: np.ndarray | None = None,
        settings: Settings | None = None,
    ) -> np.ndarray:
        """Instance ids (H, W) int32 of one predicted image: class probabilities (K, H, W) and regression
        maps (R, H, W); ``settings`` override the target's decoding settings."""
        return self.instances_of_classes(probabilities.argmax(axis=0))

    def decode_each(
        self, probabilities: np.ndarray, regression: np.ndarray | None, choices: Sequence[Settings]
    ) -> list[np.ndarray]:
        """:meth:`decode` of one image with each of several settings (tuning); targets whose decoding
        shares costly steps between settings do them once."""
        return [self.decode(probabilities, regression, choice) for choice in choices]

    def instances_of_classes(self, classes: np.ndarray) -> np.ndarray:
        """Connected components of the cell classes (4-connected)."""
        return instances_from_classes(classes, foreground=range(1, self.num_classes)).astype(np.int32)

    def tuning_grid(self) -> dict[str, list[Any]]:
        """Decoding values to try when tuning on validation (``tune=true``); empty: nothing to tune."""
        return {}

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
        description = {
            "kind": type(self).__name__,
            "class_names": list(self.class_names),
            "ignore_index": self.ignore_index,
        }
        if self.default_decoding:
            description["decoding"] = self.decoding
        return description


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

    def instances_of_classes(self, classes: np.ndarray) -> np.ndarray:
        """Interiors as seeds, grown into their border pixels (a seeded watershed)."""
        return instances_from_boundary_classes(classes, interior=1, boundary=2).astype(np.int32)

    def describe(self) -> dict:
        return {**super().describe(), "width": self.width}


_THRESHOLDS = ("otsu", "li", "fixed")


class FromChannelTarget(Target):
    """Cells from one channel of the image itself: threshold, fill holes, split, remove small objects.

    For stacks without masks (e.g. a nuclear stain next to label-free brightfield planes): the stain
    becomes the ground truth and must not also be a model input (that would be trivial). The plane is
    normalised (1-99.8 percentile) and smoothed by a Gaussian of ``smooth_sigma`` px, then thresholded by
    Otsu's or Li's method or at ``threshold`` (on the 0..1 normalised scale). A threshold merges touching
    nuclei into one object; ``split_depth`` (px) splits them where the mask's distance transform dips by
    that much between two centres (:func:`cellseg.instances.distance.split_touching`). ``output`` picks what the
    network learns of those cells: ``binary``, ``boundary`` (with ``width``), ``distance`` or ``flows``
    (with ``decoding``), as the targets of those names do.
    """

    def __init__(
        self,
        channel: ChannelRef,
        method: str = "otsu",
        threshold: float | None = None,
        smooth_sigma: float = 1.0,
        min_size: int = 30,
        fill_holes: bool = True,
        split_depth: float | None = None,
        output: str = "binary",
        width: int = 2,
        class_names: Sequence[str] | None = None,
        ignore_index: int = -100,
        decoding: Settings | None = None,
    ) -> None:
        inner: dict[str, Any] = {
            "binary": lambda: BinaryTarget(class_names, ignore_index),
            "boundary": lambda: BoundaryTarget(width, class_names, ignore_index),
            "distance": lambda: DistanceTarget(class_names, ignore_index, decoding),
            "flows": lambda: FlowTarget(class_names, ignore_index, decoding),
        }
        if output not in inner:
            raise ConfigError(f"target.output is '{output}'; expected one of {', '.join(inner)}.")
        if decoding and output in ("binary", "boundary"):
            raise ConfigError(
                f"target.decoding is set but target.output={output} has no decoding settings "
                "(they belong to output=distance and output=flows)."
            )
        self.inner: Target = inner[output]()
        self.default_names = self.inner.default_names
        self.regression_names = self.inner.regression_names
        self.default_decoding = self.inner.default_decoding
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
        if split_depth is not None and not split_depth > 0:
            raise ConfigError(
                f"target.split_depth is {split_depth!r}; expected a depth in pixels > 0, or null to keep "
                "touching objects whole."
            )
        self.channel = channel
        self.method = method
        self.threshold = threshold
        self.smooth_sigma = smooth_sigma
        self.min_size = int(min_size)
        self.fill_holes = bool(fill_holes)
        self.split_depth = None if split_depth is None else float(split_depth)
        self.output = output

    @property
    def needs_image(self) -> bool:
        return True

    def channel_index(self, channel_names: Sequence[str]) -> int:
        return resolve_channel(self.channel, channel_names)

    def instances_from_image(self, image: np.ndarray, channel_names: Sequence[str]) -> np.ndarray:
        """Instance ids (H, W) int32 derived from the target channel of ``image`` (C, H, W)."""
        from skimage.filters import threshold_li, threshold_otsu
        from skimage.segmentation import relabel_sequential

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
        if self.split_depth is None:
            instances = ndi.label(cells)[0]
        else:
            from cellseg.instances.distance import split_touching

            instances = split_touching(cells, self.split_depth)
        if self.min_size > 0:
            instances = relabel_sequential(without_small_cells(instances, self.min_size))[0]
        return instances.astype(np.int32)

    def classes(self, instances: np.ndarray) -> np.ndarray:
        return self.inner.classes(instances)

    def instances_of_classes(self, classes: np.ndarray) -> np.ndarray:
        return self.inner.instances_of_classes(classes)

    def regression(self, instances: np.ndarray) -> np.ndarray:
        return self.inner.regression(instances)

    @property
    def decoding(self) -> dict[str, Any]:
        return self.inner.decoding

    def set_decoding(self, decoding: Settings | None) -> None:
        self.inner.set_decoding(decoding)

    def decode(
        self,
        probabilities: np.ndarray,
        regression: np.ndarray | None = None,
        settings: Settings | None = None,
    ) -> np.ndarray:
        return self.inner.decode(probabilities, regression, settings)

    def decode_each(
        self, probabilities: np.ndarray, regression: np.ndarray | None, choices: Sequence[Settings]
    ) -> list[np.ndarray]:
        return self.inner.decode_each(probabilities, regression, choices)

    def tuning_grid(self) -> dict[str, list[Any]]:
        return self.inner.tuning_grid()

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


#: Allowed range of each decoding setting: (low, high, integer).
_DECODING_RANGES: dict[str, tuple[float, float, bool]] = {
    "prob_threshold": (0.0, 1.0, False),
    "peak_threshold": (0.0, 1.0, False),
    "smooth_sigma": (0.0, 100.0, False),
    "min_size": (0, 10**9, True),
    "flow_threshold": (0.0, 1000.0, False),
    "niter": (1, 100_000, True),
}


def check_decoding(settings: Settings) -> None:
    """Each decoding value is a number in its range (``flow_threshold`` may be null: no flow check)."""
    for name, value in settings.items():
        low, high, integer = _DECODING_RANGES[name]
        if value is None and name == "flow_threshold":
            continue
        kind = int if integer else (int, float)
        if isinstance(value, bool) or not isinstance(value, kind) or not low <= value <= high:
            what = "an integer" if integer else "a number"
            raise ConfigError(f"target.decoding.{name} must be {what} in [{low}, {high}], got {value!r}.")


def normalised_distance(instances: np.ndarray) -> np.ndarray:
    """Per cell, the Euclidean distance of each pixel to the nearest pixel outside the cell (background or
    another cell), divided by the cell's largest distance: 1 at the cell's centre, small at its border.

    Computed cell by cell in its bounding box (padded by one background pixel), so touching cells are
    measured against each other exactly and the cost grows with the cells' area, not the image's.
    """
    distance = np.zeros(instances.shape, np.float32)
    for label, box in enumerate(ndi.find_objects(instances), start=1):
        if box is None:
            continue
        cell = np.pad(instances[box] == label, 1)
        inside = ndi.distance_transform_edt(cell)[1:-1, 1:-1]
        inside /= max(float(inside.max()), 1.0)
        region = distance[box]
        mine = cell[1:-1, 1:-1]
        region[mine] = inside[mine]
    return distance


class MapTarget(Target):
    """Base of the targets that learn regression maps beside the background / cell classes: the classes
    are the cells' pixels, and decoding reads the cell probability and the maps."""

    default_names = ("background", "cell")

    def __init__(
        self,
        class_names: Sequence[str] | None = None,
        ignore_index: int = -100,
        decoding: Settings | None = None,
    ) -> None:
        super().__init__(class_names, ignore_index)
        self.set_decoding(decoding)

    def classes(self, instances: np.ndarray) -> np.ndarray:
        return (instances > 0).astype(np.int64)

    def decode(
        self,
        probabilities: np.ndarray,
        regression: np.ndarray | None = None,
        settings: Settings | None = None,
    ) -> np.ndarray:
        return self.decode_each(probabilities, regression, [settings or {}])[0]

    def decode_each(
        self, probabilities: np.ndarray, regression: np.ndarray | None, choices: Sequence[Settings]
    ) -> list[np.ndarray]:
        if regression is None:
            raise ValueError(
                f"{type(self).__name__}.decode needs the predicted {', '.join(self.regression_names)}."
            )
        settings = [{**self.decoding, **dict(choice)} for choice in choices]
        return self.decode_maps_each(1.0 - probabilities[0], regression, settings)

    def decode_maps_each(
        self, cell_probability: np.ndarray, maps: np.ndarray, settings: Sequence[Settings]
    ) -> list[np.ndarray]:
        """Instance ids (H, W) int32 from p(cell) (H, W) and the predicted maps (R, H, W), once per
        complete set of decoding settings."""
        return [self.decode_maps(cell_probability, maps, options) for options in settings]

    def decode_maps(self, cell_probability: np.ndarray, maps: np.ndarray, settings: Settings) -> np.ndarray:
        raise NotImplementedError


class DistanceTarget(MapTarget):
    """Cell probability (background / cell classes) plus each cell pixel's distance to the cell border,
    normalised per cell (:func:`normalised_distance`), in the spirit of StarDist's distance maps.

    Decoding: pixels with p(cell) > ``prob_threshold`` are the foreground; the cores of the predicted
    distance's peaks (where it exceeds ``peak_threshold`` after a Gaussian of ``smooth_sigma`` px) are the
    markers of a seeded watershed of the negated distance inside the foreground; cells under ``min_size``
    px are removed (:func:`cellseg.instances.distance.instances_from_distance`).
    """

    regression_names = ("distance",)
    default_decoding: ClassVar[dict[str, Any]] = {
        "prob_threshold": 0.5,
        "peak_threshold": 0.5,
        "smooth_sigma": 1.0,
        "min_size": 15,
    }

    def regression(self, instances: np.ndarray) -> np.ndarray:
        return normalised_distance(np.maximum(instances, 0))[None]

    def decode_maps(self, cell_probability: np.ndarray, maps: np.ndarray, settings: Settings) -> np.ndarray:
        from cellseg.instances.distance import instances_from_distance

        return instances_from_distance(cell_probability, maps[0], **settings)

    def tuning_grid(self) -> dict[str, list[Any]]:
        return {
            "prob_threshold": [0.3, 0.4, 0.5, 0.6, 0.7],
            "peak_threshold": [0.3, 0.4, 0.5, 0.6, 0.7],
            "smooth_sigma": [0.0, 1.0, 2.0],
        }


class FlowTarget(MapTarget):
    """Cellpose's representation: cell probability (background / cell classes) plus the flow field (the
    normalised gradient of heat diffused from each cell's centre, :mod:`cellseg.instances.flows`).

    Decoding: from every pixel with p(cell) > ``prob_threshold`` the flows are followed for ``niter``
    steps; pixels that end in the same sink form one cell; cells whose flows, recomputed from the cell,
    differ from the predicted ones by more than ``flow_threshold`` (mean squared error) are dropped, and
    so are cells under ``min_size`` px.
    """

    regression_names = ("flow_y", "flow_x")
    default_decoding: ClassVar[dict[str, Any]] = {
        "prob_threshold": 0.5,
        "flow_threshold": 0.4,
        "niter": 200,
        "min_size": 15,
    }

    def regression(self, instances: np.ndarray) -> np.ndarray:
        from cellseg.instances.flows import flows_from_instances

        return flows_from_instances(np.maximum(instances, 0)).astype(np.float32)

    def decode_maps_each(
        self, cell_probability: np.ndarray, maps: np.ndarray, settings: Sequence[Settings]
    ) -> list[np.ndarray]:
        """Settings that differ in ``flow_threshold`` only share the flow following and the flow errors."""
        import torch

        from cellseg.instances.flows import masks_for_flow_thresholds

        device = "cuda" if torch.cuda.is_available() else "cpu"  # flow following is the costly part
        groups: dict[tuple, list[int]] = {}
        for index, options in enumerate(settings):
            shared = tuple(sorted((k, v) for k, v in options.items() if k != "flow_threshold"))
            groups.setdefault(shared, []).append(index)
        decoded: dict[int, np.ndarray] = {}
        for shared, indices in groups.items():
            thresholds = [settings[i]["flow_threshold"] for i in indices]
            masks = masks_for_flow_thresholds(
                maps, cell_probability, flow_thresholds=thresholds, device=device, **dict(shared)
            )
            decoded.update(zip(indices, (m.astype(np.int32) for m in masks), strict=True))
        return [decoded[index] for index in range(len(settings))]

    def tuning_grid(self) -> dict[str, list[Any]]:
        return {"prob_threshold": [0.3, 0.4, 0.5, 0.6, 0.7], "flow_threshold": [0.2, 0.4, 0.6, 0.8, None]}


TARGETS: dict[str, type[Target]] = {
    cls.__name__: cls for cls in (BinaryTarget, BoundaryTarget, FromChannelTarget, DistanceTarget, FlowTarget)
}


def target_from_description(description: Mapping[str, Any], decoding: Settings | None = None) -> Target:
    """Rebuild a target from its ``describe()`` (what a checkpoint stores), with ``decoding`` settings
    (tuned, or given on a command line) over the ones it describes."""
    import inspect

    options = dict(description)
    kind = options.pop("kind", None)
    if kind not in TARGETS:
        raise ConfigError(
            f"Unknown target kind {kind!r} in the checkpoint; expected one of {', '.join(TARGETS)}."
        )
    accepted = inspect.signature(TARGETS[kind]).parameters
    target = TARGETS[kind](**{k: v for k, v in options.items() if k in accepted})
    if decoding:
        target.set_decoding({**target.decoding, **dict(decoding)})
    return target
