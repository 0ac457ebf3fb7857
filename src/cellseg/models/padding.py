"""Wrappers that let a network take any input size and return logits of exactly that size."""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn


def _mirror_pad(x: torch.Tensor, top: int, bottom: int, left: int, right: int) -> torch.Tensor:
    """Reflect-pad (the overlap-tile strategy's mirroring); replicate where reflection cannot reach."""
    height, width = x.shape[-2:]
    mode = "reflect" if max(top, bottom) < height and max(left, right) < width else "replicate"
    return F.pad(x, (left, right, top, bottom), mode=mode)


class PadToMultiple(nn.Module):
    """Mirror-pads the input up to a multiple of the network's stride and crops the output back.

    Encoder-decoder networks need H and W divisible by their total stride (32 for a 5-level ResNet);
    this lets whole validation slices and odd-sized microscope images through unchanged. ``min_size``
    pads small inputs further for networks that pool their deepest features again (PAN needs 128).
    """

    def __init__(self, net: nn.Module, multiple: int, min_size: int = 0) -> None:
        super().__init__()
        self.net = net
        self.multiple = multiple
        self.min_size = min_size

    def _padded(self, size: int) -> int:
        return max(size + (-size) % self.multiple, self.min_size + (-self.min_size) % self.multiple)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        height, width = x.shape[-2:]
        pad_h = self._padded(height) - height
        pad_w = self._padded(width) - width
        if not pad_h and not pad_w:
            return self.net(x)
        top, left = pad_h // 2, pad_w // 2
        padded = _mirror_pad(x, top, pad_h - top, left, pad_w - left)
        return self.net(padded)[..., top : top + height, left : left + width]


class MirrorTile(nn.Module):
    """Runs a network whose output is smaller than its input (valid convolutions) on any input size.

    ``multiple`` is the network's total stride (2**depth), the grid its predictions are aligned to.
    ``input_size(n)`` gives the smallest input whose output covers ``n`` pixels (636 for 512 with a
    depth-4 valid U-Net); the input is mirror-padded to it and the centred output cropped to H x W, as
    in the U-Net paper's overlap-tile strategy.
    """

    def __init__(
        self,
        net: nn.Module,
        input_size: Callable[[int], int],
        output_size: Callable[[int], int],
        multiple: int = 1,
    ):
        super().__init__()
        self.net = net
        self.multiple = multiple
        self.input_size = input_size
        self.output_size = output_size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        height, width = x.shape[-2:]
        in_h, in_w = self.input_size(height), self.input_size(width)
        out_h, out_w = self.output_size(in_h), self.output_size(in_w)
        top, left = (in_h - height) // 2, (in_w - width) // 2
        padded = _mirror_pad(x, top, in_h - height - top, left, in_w - width - left)
        # The output is centred on the padded input: its first pixel sits at (in - out) / 2.
        y0, x0 = top - (in_h - out_h) // 2, left - (in_w - out_w) // 2
        return self.net(padded)[..., y0 : y0 + height, x0 : x0 + width]


def input_multiple(net: nn.Module) -> int:
    """The total stride of a wrapped network: inputs offset by a multiple of it give shifted outputs.

    Tiles placed on this grid see the same pooling phase, so their overlaps agree (no seams).
    """
    return int(getattr(net, "multiple", 1)) if isinstance(net, (PadToMultiple, MirrorTile)) else 1
