"""Wrappers that make a network exportable at any input size."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from cellseg.models.padding import PadToMultiple


class AlwaysPad(nn.Module):
    """PadToMultiple's padding without Python branches, so torch.export keeps H and W symbolic.

    PadToMultiple skips padding when the input already fits and picks the mirror mode by size; both are
    Python decisions an exporter freezes at the example's size. Here the (possibly zero) reflect padding
    is always applied and cropped off again, which is the same computation for every H, W >=
    ``min_side`` = max(stride, PadToMultiple's min_size); the parity check confirms it per model.
    """

    def __init__(self, wrapped: PadToMultiple) -> None:
        super().__init__()
        self.net = wrapped.net
        self.multiple = int(wrapped.multiple)
        self.min_side = max(self.multiple, int(wrapped.min_size))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        height, width = x.shape[-2], x.shape[-1]
        pad_h, pad_w = (-height) % self.multiple, (-width) % self.multiple
        top, left = pad_h // 2, pad_w // 2
        padded = F.pad(x, (left, pad_w - left, top, pad_h - top), mode="reflect")
        return self.net(padded)[..., top : top + height, left : left + width]


class PackagedNetwork(nn.Module):
    """Normalised source planes in, class probabilities (then any regression maps) out: a checkpoint's
    network as a model zoo package runs it, where preprocessing only normalises planes and consumers
    (deepImageJ, ilastik, napari) expect probabilities.

    ``mixing`` (model channels, source planes) is the channel strategy at prediction (a selection, a
    mean, a blank), applied as a 1x1 convolution before the network; softmax makes the first
    ``num_classes`` outputs probabilities. ``net`` should already be size-agnostic (:class:`AlwaysPad`).
    """

    def __init__(self, net: nn.Module, mixing: torch.Tensor, num_classes: int) -> None:
        super().__init__()
        self.net = net
        self.register_buffer("mixing", mixing.to(torch.float32)[:, :, None, None].contiguous())
        self.num_classes = int(num_classes)
        self.min_side = int(getattr(net, "min_side", 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        outputs = self.net(F.conv2d(x, self.mixing))
        probabilities = torch.softmax(outputs[:, : self.num_classes], dim=1)
        if outputs.shape[1] == self.num_classes:
            return probabilities
        return torch.cat([probabilities, outputs[:, self.num_classes :]], dim=1)
