"""Ronneberger et al.'s U-Net (2015) with the knobs the seed projects turn.

- ``init_features``: 64 as in the paper (and seeds 000, 002, 004), 16 as in seed 003;
- ``padding='same'``: 3x3 convolutions with padding 1, output = input size (seeds 000, 003);
- ``padding='valid'``: the contracting path and the bottleneck use valid convolutions and the
  expanding path same ones, with the skips centre-cropped (seed 004): a 636 x 636 input gives
  512 x 512 for depth 4. The model pads any input by mirroring so that its output covers it;
- ``batch_norm``: BN after each conv (seed 003) or none (paper, seed 004; convs then have a bias);
- ``upsampling``: ``transpose`` (2x2 stride-2 transposed conv halving channels) or ``bilinear``
  (x2 bilinear, then a 1x1 conv halving channels, with no checkerboard pattern);
- ``dropout``: Dropout2d after each bottleneck conv (seed 004 uses 0.2);
- ``init``: ``default``, ``he`` (paper, seed 004) or ``normal`` (seed 002's N(0, 0.02)).
"""

from __future__ import annotations

import torch
from torch import nn

from cellseg.errors import ConfigError
from cellseg.models.init import initialize
from cellseg.models.padding import MirrorTile, PadToMultiple
from cellseg.models.registry import register

PADDINGS = ("same", "valid")
UPSAMPLINGS = ("transpose", "bilinear")


class DoubleConv(nn.Sequential):
    """Two 3x3 conv (+ BN) + ReLU layers, with optional Dropout2d after each ReLU."""

    def __init__(self, in_ch: int, out_ch: int, padding: int, batch_norm: bool, dropout: float = 0.0):
        layers: list[nn.Module] = []
        for cin, cout in ((in_ch, out_ch), (out_ch, out_ch)):
            layers.append(nn.Conv2d(cin, cout, 3, padding=padding, bias=not batch_norm))
            if batch_norm:
                layers.append(nn.BatchNorm2d(cout))
            layers.append(nn.ReLU(inplace=True))
            if dropout > 0:
                layers.append(nn.Dropout2d(dropout))
        super().__init__(*layers)


def center_crop(x: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """The central ``height`` x ``width`` window of ``x`` (skip connections of valid U-Nets)."""
    top, left = (x.shape[-2] - height) // 2, (x.shape[-1] - width) // 2
    return x[..., top : top + height, left : left + width]


class UpBlock(nn.Module):
    """Upsample x2 halving the channels, concatenate the (cropped) skip, then a DoubleConv."""

    def __init__(self, in_ch: int, upsampling: str, batch_norm: bool) -> None:
        super().__init__()
        out_ch = in_ch // 2
        if upsampling == "transpose":
            self.up: nn.Module = nn.ConvTranspose2d(in_ch, out_ch, kernel_size=2, stride=2)
        else:
            self.up = nn.Sequential(
                nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False),
                nn.Conv2d(in_ch, out_ch, kernel_size=1),
            )
        self.conv = DoubleConv(in_ch, out_ch, padding=1, batch_norm=batch_norm)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        x = self.up(x)
        return self.conv(torch.cat([center_crop(skip, x.shape[-2], x.shape[-1]), x], dim=1))


class UNetClassic(nn.Module):
    """The U-Net itself; output H x W = input H x W (same) or smaller (valid). See the module docstring."""

    def __init__(
        self,
        in_channels: int,
        classes: int,
        depth: int = 4,
        init_features: int = 64,
        padding: str = "same",
        batch_norm: bool = True,
        upsampling: str = "transpose",
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        self.depth = depth
        self.valid = padding == "valid"
        conv_pad = 0 if self.valid else 1
        widths = [init_features * 2**i for i in range(depth + 1)]
        self.down = nn.ModuleList()
        cin = in_channels
        for width in widths[:-1]:
            self.down.append(DoubleConv(cin, width, conv_pad, batch_norm))
            cin = width
        self.pool = nn.MaxPool2d(2)
        self.bottleneck = DoubleConv(widths[-2], widths[-1], conv_pad, batch_norm, dropout)
        self.up = nn.ModuleList(UpBlock(w, upsampling, batch_norm) for w in reversed(widths[1:]))
        self.head = nn.Conv2d(widths[0], classes, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips: list[torch.Tensor] = []  # annotated and indexed from the end: torch.jit.script compiles it
        for block in self.down:
            x = block(x)
            skips.append(x)
            x = self.pool(x)
        x = self.bottleneck(x)
        for index, block in enumerate(self.up):
            x = block(x, skips[-1 - index])
        return self.head(x)

    # Sizes of the valid variant: each level loses 4 pixels (two 3x3 valid convs) before its pool.
    def valid_input_size(self, output: int) -> int:
        """Smallest input whose output covers ``output`` pixels (636 for 512 at depth 4)."""
        size = -(-output // 2**self.depth) + 4  # bottleneck input, rounded up to a whole pixel
        for _ in range(self.depth):
            size = 2 * size + 4
        return size

    def valid_output_size(self, size: int) -> int:
        """Output size for an input of ``size`` (pools floor odd sizes like nn.MaxPool2d)."""
        for _ in range(self.depth):
            size = (size - 4) // 2
        return (size - 4) * 2**self.depth


def _check(name: str, value: object, valid: tuple[str, ...]) -> None:
    if value not in valid:
        raise ConfigError(f"model.{name} must be one of {', '.join(valid)}, got '{value}'.")


@register("unet_classic")
def build_unet_classic(
    in_channels: int,
    classes: int,
    depth: int = 4,
    init_features: int = 64,
    padding: str = "same",
    batch_norm: bool = True,
    upsampling: str = "transpose",
    dropout: float = 0.0,
    init: str = "default",
) -> nn.Module:
    """Ronneberger's U-Net wrapped to map any H x W input to H x W logits."""
    _check("padding", padding, PADDINGS)
    _check("upsampling", upsampling, UPSAMPLINGS)
    if not 1 <= int(depth) <= 6:
        raise ConfigError(f"model.depth must be an integer from 1 to 6, got {depth}.")
    if int(init_features) < 1:
        raise ConfigError(f"model.init_features must be >= 1, got {init_features}.")
    if not 0.0 <= float(dropout) < 1.0:
        raise ConfigError(f"model.dropout must be in [0, 1), got {dropout}.")
    net = UNetClassic(
        in_channels,
        classes,
        int(depth),
        int(init_features),
        padding,
        bool(batch_norm),
        upsampling,
        float(dropout),
    )
    initialize(net, init)
    if net.valid:
        return MirrorTile(net, net.valid_input_size, net.valid_output_size, 2**net.depth)
    return PadToMultiple(net, 2**net.depth)
