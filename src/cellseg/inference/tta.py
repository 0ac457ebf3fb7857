"""Test-time augmentation: average the predictions of flipped and rotated copies of each tile.

``flips`` uses the identity and the horizontal, vertical and double flips (4 passes); ``d4`` adds the
transposes (all 8 symmetries of the square, i.e. flips and 90-degree rotations). Each output is mapped
back by the inverse transform before averaging, so the cost is one network pass per transform.
"""

from __future__ import annotations

from collections.abc import Callable

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


def with_tta(predict: BatchPredictor, mode: str) -> BatchPredictor:
    """``predict`` averaged over the symmetries of ``mode`` (the identity alone for ``none``)."""
    pairs = transforms(mode)
    if len(pairs) == 1:
        return predict

    def averaged(tiles: torch.Tensor) -> torch.Tensor:
        total = None
        for forward, inverse in pairs:
            out = inverse(predict(forward(tiles))).float()
            total = out if total is None else total + out
        return total / len(pairs)

    return averaged
