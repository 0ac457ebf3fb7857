"""Test-time augmentation: average the predictions of flipped and rotated copies of each tile.

``flips`` uses the identity and the horizontal, vertical and double flips (4 passes); ``d4`` adds the
transposes (all 8 symmetries of the square, i.e. flips and 90-degree rotations). Each output is mapped
back by the inverse transform before averaging, so the cost is one network pass per transform.

Vector outputs (the flows of ``target=flows``) are mapped back as vectors: a horizontal flip negates the
x component, a vertical flip the y component, a transpose swaps the two.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

from cellseg.errors import ConfigError
from cellseg.inference.tiling import BatchPredictor

Transform = Callable[[torch.Tensor], torch.Tensor]

_FLIPS: tuple[tuple[int, ...], ...] = ((), (-1,), (-2,), (-2, -1))


def _flip(dims: tuple[int, ...]) -> Transform:
    return (lambda x: x.flip(dims)) if dims else (lambda x: x)


def _transposed(dims: tuple[int, ...]) -> tuple[Transform, Transform]:
    flip = _flip(dims)
    return (lambda x: flip(x).transpose(-2, -1)), (lambda y: flip(y.transpose(-2, -1)))


def transforms(mode: str) -> list[tuple[Transform, Transform]]:
    """(forward, inverse) pairs of a TTA mode: ``none`` (1), ``flips`` (4) or ``d4`` (8)."""
    if mode == "none":
        return [(_flip(()), _flip(()))]
    if mode not in TTA_MODES:
        raise ConfigError(f"tta is '{mode}'; expected one of {', '.join(TTA_MODES)}.")
    pairs = [(_flip(dims), _flip(dims)) for dims in _FLIPS]  # a flip is its own inverse
    if mode == "d4":
        pairs += [_transposed(dims) for dims in _FLIPS]
    return pairs


TTA_MODES = ("none", "flips", "d4")


def _vector_fix(dims: tuple[int, ...], transposed: bool, vectors: Sequence[tuple[int, int]]) -> Transform:
    """The component change of vector channels (y, x) under the inverse of flip(dims) [then transpose]:
    undo the transpose (swap y and x), then the flips (negate the flipped axes' components)."""

    def fix(y: torch.Tensor) -> torch.Tensor:
        if not vectors:
            return y
        y = y.clone()
        for iy, ix in vectors:
            if transposed:
                y[:, [iy, ix]] = y[:, [ix, iy]]
            if -2 in dims:
                y[:, iy] = -y[:, iy]
            if -1 in dims:
                y[:, ix] = -y[:, ix]
        return y

    return fix


def with_tta(predict: BatchPredictor, mode: str, vectors: Sequence[tuple[int, int]] = ()) -> BatchPredictor:
    """``predict`` averaged over the symmetries of ``mode`` (the identity alone for ``none``);
    ``vectors`` are (y, x) channel pairs of the output that hold vector components."""
    pairs = transforms(mode)
    if len(pairs) == 1:
        return predict
    fixes = [_vector_fix(dims, False, vectors) for dims in _FLIPS]
    fixes += [_vector_fix(dims, True, vectors) for dims in _FLIPS][: len(pairs) - len(fixes)]

    def averaged(tiles: torch.Tensor) -> torch.Tensor:
        total = None
        for (forward, inverse), fix in zip(pairs, fixes, strict=True):
            out = fix(inverse(predict(forward(tiles))).float())
            total = out if total is None else total + out
        return total / len(pairs)

    return averaged
