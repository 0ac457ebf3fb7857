"""Seed 001's U-Net: a ResNet34 encoder and fastai v1's ``DynamicUnet`` decoder.

The decoder upsamples by pixel shuffle (sub-pixel convolution) whose 1x1 convolution is ICNR-initialised
(Aitken et al. 2017): every output sub-pixel starts from the same kernel, so the layer begins as a
nearest-neighbour upsampling and shows no checkerboard artefacts. Layout, as fastai v1's
``unet_learner`` builds it (``norm_type=None``: decoder convs have a bias and no BN):

encoder -> BN + ReLU -> middle conv (C -> 2C -> C) -> one ``UnetBlock`` per encoder skip
(pixel-shuffle x2 to half the channels, BN on the skip, ReLU(concat), two 3x3 conv + ReLU; the last
block halves its width) -> pixel shuffle to full resolution -> concatenation with the network input
("last cross") -> residual block of two 3x3 convs -> 1x1 conv to the class logits.
"""

from __future__ import annotations

import warnings

import torch
import torch.nn.functional as F
from torch import nn

from cellseg.models.padding import PadToMultiple
from cellseg.models.pretrained import hub_offline, resolve_encoder_weights
from cellseg.models.registry import register


def conv_layer(in_ch: int, out_ch: int, kernel_size: int = 3, relu: bool = True, batch_norm: bool = False):
    """fastai v1's ``conv_layer``: conv (Kaiming-normal weight, zero bias) + ReLU (+ BN)."""
    conv = nn.Conv2d(in_ch, out_ch, kernel_size, padding=kernel_size // 2, bias=not batch_norm)
    nn.init.kaiming_normal_(conv.weight)
    if conv.bias is not None:
        nn.init.zeros_(conv.bias)
    layers: list[nn.Module] = [conv]
    if relu:
        layers.append(nn.ReLU(inplace=True))
    if batch_norm:
        layers.append(nn.BatchNorm2d(out_ch))
    return nn.Sequential(*layers)


def icnr_(weight: torch.Tensor, scale: int = 2) -> torch.Tensor:
    """ICNR: one Kaiming-normal kernel per output channel, repeated for its ``scale**2`` sub-pixels."""
    out_ch = weight.shape[0] // scale**2
    kernel = nn.init.kaiming_normal_(torch.empty(out_ch, *weight.shape[1:]))
    with torch.no_grad():
        weight.copy_(kernel.repeat_interleave(scale**2, dim=0))
    return weight


class PixelShuffleICNR(nn.Module):
    """1x1 conv to ``out_ch * scale**2`` channels (ICNR init) + ReLU + pixel shuffle: x ``scale`` size."""

    def __init__(self, in_ch: int, out_ch: int, scale: int = 2, batch_norm: bool = False) -> None:
        super().__init__()
        self.conv = conv_layer(in_ch, out_ch * scale**2, kernel_size=1, relu=True, batch_norm=batch_norm)
        icnr_(self.conv[0].weight, scale)
        self.shuffle = nn.PixelShuffle(scale)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.shuffle(self.conv(x))


class UnetBlock(nn.Module):
    """fastai v1's ``UnetBlock``: upsample, BN the skip, ReLU(concat), two 3x3 convs."""

    def __init__(self, up_ch: int, skip_ch: int, final_div: bool, batch_norm: bool = False) -> None:
        super().__init__()
        self.shuf = PixelShuffleICNR(up_ch, up_ch // 2, batch_norm=batch_norm)
        self.bn = nn.BatchNorm2d(skip_ch)
        cat_ch = up_ch // 2 + skip_ch
        out_ch = cat_ch if final_div else cat_ch // 2
        self.conv1 = conv_layer(cat_ch, out_ch, batch_norm=batch_norm)
        self.conv2 = conv_layer(out_ch, out_ch, batch_norm=batch_norm)
        self.out_channels = out_ch

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        up = self.shuf(x)
        if up.shape[-2:] != skip.shape[-2:]:
            up = F.interpolate(up, skip.shape[-2:], mode="nearest")
        return self.conv2(self.conv1(F.relu(torch.cat([up, self.bn(skip)], dim=1))))


class ResBlock(nn.Module):
    """x + conv(conv(x)), fastai's ``res_block`` without a bottleneck."""

    def __init__(self, channels: int, batch_norm: bool = False) -> None:
        super().__init__()
        self.convs = nn.Sequential(
            conv_layer(channels, channels, batch_norm=batch_norm),
            conv_layer(channels, channels, batch_norm=batch_norm),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.convs(x)


class PixelShuffleUnet(nn.Module):
    """Encoder from smp (features at strides 2..32), fastai v1 ``DynamicUnet`` decoder."""

    def __init__(self, encoder: nn.Module, in_channels: int, classes: int, batch_norm: bool = False) -> None:
        super().__init__()
        self.encoder = encoder
        channels = list(encoder.out_channels)  # e.g. (in, 64, 64, 128, 256, 512) for ResNet34
        deepest = channels[-1]
        self.bn_relu = nn.Sequential(nn.BatchNorm2d(deepest), nn.ReLU(inplace=True))
        self.middle = nn.Sequential(
            conv_layer(deepest, deepest * 2, batch_norm=batch_norm),
            conv_layer(deepest * 2, deepest, batch_norm=batch_norm),
        )
        skips = channels[1:-1][::-1]  # 256, 128, 64, 64: strides 16, 8, 4, 2
        blocks, width = [], deepest
        for index, skip_ch in enumerate(skips):
            block = UnetBlock(width, skip_ch, final_div=index < len(skips) - 1, batch_norm=batch_norm)
            blocks.append(block)
            width = block.out_channels
        self.blocks = nn.ModuleList(blocks)
        self.final_shuf = PixelShuffleICNR(width, width, batch_norm=batch_norm)
        self.res = ResBlock(width + in_channels, batch_norm=batch_norm)
        self.head = conv_layer(width + in_channels, classes, kernel_size=1, relu=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = self.encoder(x)
        y = self.middle(self.bn_relu(features[-1]))
        for block, skip in zip(self.blocks, features[1:-1][::-1], strict=True):
            y = block(y, skip)
        y = self.final_shuf(y)
        if y.shape[-2:] != x.shape[-2:]:
            y = F.interpolate(y, x.shape[-2:], mode="nearest")
        return self.head(self.res(torch.cat([y, x], dim=1)))  # last cross: the input itself


@register("unet_pixelshuffle")
def build_unet_pixelshuffle(
    in_channels: int,
    classes: int,
    encoder: str = "resnet34",
    encoder_weights: str | None = None,
    batch_norm: bool = False,
) -> nn.Module:
    """Seed 001's model; ``encoder_weights=imagenet`` loads cached weights and adapts the first conv."""
    from segmentation_models_pytorch.encoders import get_encoder

    weights = resolve_encoder_weights(encoder, encoder_weights)
    with hub_offline(), warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r".*encoders are deprecated.*")
        backbone = get_encoder(encoder, in_channels=in_channels, depth=5, weights=weights)
    return PadToMultiple(PixelShuffleUnet(backbone, in_channels, classes, batch_norm), backbone.output_stride)
