"""Reading label images: the mask value convention of a data set is configuration, not code.

Every mask is decoded into instance ids (H, W) int32: 0 = background, 1..n = cells, -1 = unannotated
(ignored by losses and metrics). Semantic masks (cell/background) become instances by connected
components, so instance-aware targets and metrics work on them too.

Conventions of the field, as ``data.mask`` settings:

| data | setting |
|---|---|
| ISBI 2012 (255 = cell interior, 0 = membrane) | ``foreground: [255]`` |
| 0/1 masks (seed 001's ``Mask_Norm``) | ``foreground: [1]`` |
| 0/255 masks | ``foreground: [255]`` |
| seed 000's RGB masks (white = background) | ``reduce: min, threshold: 249, invert: true`` |
| label images with one id per cell | ``kind: instances`` |
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage as ndi

from cellseg.errors import ConfigError, DataError

_REDUCERS = {"min": np.min, "max": np.max, "mean": np.mean, "first": lambda a, axis: a.take(0, axis=axis)}
IGNORE = -1


@dataclass(frozen=True)
class MaskDecoder:
    """How the pixel values of a data set's masks map to cells, background and unannotated pixels.

    ``kind='semantic'``: cell pixels are those whose value is in ``foreground`` (or, when ``threshold``
    is set, those above it; ``invert`` swaps the two sides); values in ``background`` are background and
    values in ``ignore`` unannotated; any other value is an error (a mask that does not follow the
    declared convention). ``kind='instances'``: each positive value is one cell. Masks with several
    channels (RGB) are first reduced to one plane with ``reduce``. ``connectivity`` 1 = 4-connected
    cells (ISBI's definition), 2 = 8-connected.
    """

    kind: str = "semantic"
    foreground: Sequence[int] | None = (255,)
    background: Sequence[int] = (0,)
    ignore: Sequence[int] = field(default_factory=tuple)
    threshold: float | None = None
    invert: bool = False
    reduce: str = "max"
    connectivity: int = 1

    def __post_init__(self) -> None:
        if self.kind not in ("semantic", "instances"):
            raise ConfigError(f"data.mask.kind is '{self.kind}'; expected 'semantic' or 'instances'.")
        if self.reduce not in _REDUCERS:
            raise ConfigError(f"data.mask.reduce is '{self.reduce}'; expected one of {', '.join(_REDUCERS)}.")
        if self.connectivity not in (1, 2):
            raise ConfigError(
                f"data.mask.connectivity must be 1 (4-connected) or 2, got {self.connectivity}."
            )
        if self.kind == "semantic" and self.threshold is None and not self.foreground:
            raise ConfigError("data.mask needs either foreground values or a threshold for semantic masks.")

    def _plane(self, mask: np.ndarray) -> np.ndarray:
        if mask.ndim == 3:
            return _REDUCERS[self.reduce](mask, axis=0)
        if mask.ndim != 2:
            raise DataError(f"a mask must be (H, W) or (C, H, W), got shape {mask.shape}")
        return mask

    def decode(self, mask: np.ndarray, name: str = "mask") -> np.ndarray:
        """Instance ids (H, W) int32 with -1 for unannotated pixels; ``name`` is used in errors."""
        plane = self._plane(np.asarray(mask))
        ignored = np.isin(plane, list(self.ignore)) if self.ignore else np.zeros(plane.shape, bool)
        if self.kind == "instances":
            if np.any(plane[~ignored] < 0):
                raise DataError(f"{name}: instance masks must be >= 0, found {int(plane[~ignored].min())}.")
            instances = plane.astype(np.int32)
        else:
            if self.threshold is not None:
                cells = plane > self.threshold
            else:
                cells = np.isin(plane, list(self.foreground or ()))
                unknown = ~(cells | ignored | np.isin(plane, list(self.background)))
                if unknown.any():
                    values = np.unique(plane[unknown])[:8].tolist()
                    raise DataError(
                        f"{name}: mask values {values} are neither foreground {list(self.foreground or ())}, "
                        f"background {list(self.background)} nor ignore {list(self.ignore)}; set data.mask "
                        "to the data set's convention (see the README's mask table)."
                    )
            if self.invert:
                cells = ~cells
            cells &= ~ignored
            structure = ndi.generate_binary_structure(2, self.connectivity)
            instances, _ = ndi.label(cells, structure=structure)
            instances = instances.astype(np.int32)
        instances[ignored] = IGNORE
        return instances
