"""Seed 000's DeConvNet and SegSkipNet (Noh et al. 2015 without the fully connected layers).

20 weight layers, output stride 16. Encoder: 3x3 conv (no bias) + BN + ReLU blocks, 64 -> 1024
channels, four 2x2 max-pools that keep their indices; decoder: size-keeping 3x3 transposed convs
("deconvolutions") + BN + ReLU and max-unpooling with the stored indices; a 1x1 conv gives the logits.
Layers are named as in seed 000's table (``conv1-1`` ... ``deconv9-2``, ``pool1``, ``unpool4``,
``output``), so ``python -m cellseg.stats model=deconvnet`` prints that table row for row.

SegSkipNet: the last deconvolution of each decoder stage has no ReLU; instead ``relu(x + pooled)``
adds the encoder's pooled feature map of the same size just before each unpooling.
"""

from __future__ import annotations

import torch
from torch import nn

from cellseg.models.padding import PadToMultiple
from cellseg.models.registry import register

# (name, in, out) per conv; stages end with a pool. Channels as in seed 000's table.
_ENCODER = (
    (("conv1-1", None, 64), ("conv1-2", 64, 64)),
    (("conv2-1", 64, 128), ("conv2-2", 128, 128)),
    (("conv3-1", 128, 256), ("conv3-2", 256, 256)),
    (("conv4-1", 256, 512), ("conv4-2", 512, 512)),
    (("conv5-1", 512, 1024), ("conv5-2", 1024, 1024)),
)
# Decoder stages; each but the last ends with an unpooling by the indices of the pool it mirrors.
_DECODER = (
    (("deconv5-3", 1024, 512),),
    (("deconv6-1", 512, 512), ("deconv6-2", 512, 256)),
    (("deconv7-1", 256, 256), ("deconv7-2", 256, 128)),
    (("deconv8-1", 128, 128), ("deconv8-2", 128, 64)),
    (("deconv9-1", 64, 64), ("deconv9-2", 64, 64)),
)


class ConvBNReLU(nn.Sequential):
    """3x3 conv (pad 1, no bias) + BN + ReLU; ``transpose`` uses a stride-1 transposed conv."""

    def __init__(self, in_ch: int, out_ch: int, transpose: bool = False, relu: bool = True) -> None:
        conv_type = nn.ConvTranspose2d if transpose else nn.Conv2d
        layers: list[nn.Module] = [conv_type(in_ch, out_ch, 3, padding=1, bias=False), nn.BatchNorm2d(out_ch)]
        if relu:
            layers.append(nn.ReLU(inplace=True))
        super().__init__(*layers)


class DeConvNet(nn.Module):
    """DeConvNet (``skip=False``) or SegSkipNet (``skip=True``); input H and W divisible by 16."""

    def __init__(self, in_channels: int, classes: int, skip: bool = False) -> None:
        super().__init__()
        self.skip = skip
        self._encoder: list[tuple[str, ...]] = []
        for stage, convs in enumerate(_ENCODER, start=1):
            names = []
            for name, cin, cout in convs:
                self.add_module(name, ConvBNReLU(cin or in_channels, cout))
                names.append(name)
            if stage < len(_ENCODER):
                self.add_module(f"pool{stage}", nn.MaxPool2d(2, stride=2, return_indices=True))
            self._encoder.append(tuple(names))
        self._decoder: list[tuple[str, ...]] = []
        for stage, convs in enumerate(_DECODER):
            unpool = len(_DECODER) - 1 - stage  # 4, 3, 2, 1, then none
            names = []
            for index, (name, cin, cout) in enumerate(convs):
                last_before_skip = skip and unpool > 0 and index == len(convs) - 1
                self.add_module(name, ConvBNReLU(cin, cout, transpose=True, relu=not last_before_skip))
                names.append(name)
            if unpool:
                self.add_module(f"unpool{unpool}", nn.MaxUnpool2d(2, stride=2))
            self._decoder.append(tuple(names))
        self.add_module("output", nn.Conv2d(64, classes, kernel_size=1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pooled, indices = [], []
        for stage, names in enumerate(self._encoder, start=1):
            for name in names:
                x = self.get_submodule(name)(x)
            if stage < len(self._encoder):
                x, index = self.get_submodule(f"pool{stage}")(x)
                pooled.append(x)
                indices.append(index)
        for stage, names in enumerate(self._decoder):
            for name in names:
                x = self.get_submodule(name)(x)
            unpool = len(self._decoder) - 1 - stage
            if unpool:
                if self.skip:
                    x = torch.relu(x + pooled[unpool - 1])
                x = self.get_submodule(f"unpool{unpool}")(x, indices[unpool - 1])
        return self.get_submodule("output")(x)


@register("deconvnet")
def build_deconvnet(in_channels: int, classes: int) -> nn.Module:
    """Seed 000's DeConvNet; inputs of any size are mirror-padded to a multiple of 16."""
    return PadToMultiple(DeConvNet(in_channels, classes, skip=False), 16)


@register("segskipnet")
def build_segskipnet(in_channels: int, classes: int) -> nn.Module:
    """Seed 000's SegSkipNet (DeConvNet with additive encoder skips before each unpooling)."""
    return PadToMultiple(DeConvNet(in_channels, classes, skip=True), 16)
