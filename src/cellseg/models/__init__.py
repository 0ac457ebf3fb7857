"""Model registry: ``create_model(arch, in_channels, classes, ...)`` builds any ``model=`` option.

``in_channels`` comes from the channel strategy and ``classes`` from the target, so neither is ever
typed in a model config.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from cellseg.errors import ConfigError

ModelBuilder = Callable[..., nn.Module]
ARCHITECTURES: dict[str, ModelBuilder] = {}


def register(name: str) -> Callable[[ModelBuilder], ModelBuilder]:
    """Add a builder ``fn(in_channels, classes, **options) -> nn.Module`` under ``name``."""

    def decorator(builder: ModelBuilder) -> ModelBuilder:
        if name in ARCHITECTURES:
            raise ConfigError(f"Model architecture '{name}' is registered twice.")
        ARCHITECTURES[name] = builder
        return builder

    return decorator


class PadToMultiple(nn.Module):
    """Mirror-pads the input up to a multiple of the network's stride and crops the output back.

    Encoder-decoder networks need H and W divisible by their total stride (32 for a 5-level ResNet);
    this lets whole validation slices and odd-sized microscope images through unchanged.
    """

    def __init__(self, net: nn.Module, multiple: int) -> None:
        super().__init__()
        self.net = net
        self.multiple = multiple

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        height, width = x.shape[-2:]
        pad_h = (-height) % self.multiple
        pad_w = (-width) % self.multiple
        if not pad_h and not pad_w:
            return self.net(x)
        top, left = pad_h // 2, pad_w // 2
        mode = "reflect" if pad_h < height and pad_w < width else "replicate"
        padded = F.pad(x, (left, pad_w - left, top, pad_h - top), mode=mode)
        return self.net(padded)[..., top : top + height, left : left + width]


@register("unet")
def _smp_unet(
    in_channels: int,
    classes: int,
    encoder: str = "resnet34",
    encoder_weights: str | None = None,
    encoder_depth: int = 5,
    decoder_channels: tuple[int, ...] = (256, 128, 64, 32, 16),
    **kwargs: Any,
) -> nn.Module:
    """segmentation-models-pytorch's U-Net (randomly initialised unless ``encoder_weights`` is set)."""
    import segmentation_models_pytorch as smp

    net = smp.create_model(
        "unet",
        encoder_name=encoder,
        encoder_weights=encoder_weights,
        encoder_depth=encoder_depth,
        decoder_channels=tuple(decoder_channels),
        in_channels=in_channels,
        classes=classes,
        **kwargs,
    )
    return PadToMultiple(net, 2**encoder_depth)


def create_model(arch: str, in_channels: int, classes: int, **options: Any) -> nn.Module:
    """Build the network named ``arch`` for ``in_channels`` inputs and ``classes`` output logits."""
    if arch not in ARCHITECTURES:
        raise ConfigError(f"Unknown model.arch '{arch}'. Available: {', '.join(sorted(ARCHITECTURES))}.")
    if in_channels < 1 or classes < 1:
        raise ConfigError(
            f"A model needs in_channels >= 1 and classes >= 1, got {in_channels} and {classes}."
        )
    return ARCHITECTURES[arch](in_channels=in_channels, classes=classes, **options)
