"""segmentation-models-pytorch architectures: any smp or timm (``tu-...``) encoder via ``model.encoder``.

Each option has a default encoder that builds offline from random init and handles small, odd-sized
inputs; pretrained weights are opt-in (``model.encoder_weights=imagenet``) and come from the local cache
(see :mod:`cellseg.models.pretrained`). smp adapts the first convolution itself when
``in_channels != 3`` (pretrained RGB filters are summed for 1 channel, cycled and rescaled for more).
"""

from __future__ import annotations

import warnings
from typing import Any

from torch import nn

from cellseg.errors import ConfigError
from cellseg.models.padding import PadToMultiple
from cellseg.models.pretrained import hub_offline, resolve_encoder_weights
from cellseg.models.registry import register

# option name -> (smp architecture name, default encoder). segformer's MiT encoder is its own paper's.
SMP_ARCHITECTURES: dict[str, tuple[str, str]] = {
    "unet": ("unet", "resnet34"),
    "unetplusplus": ("unetplusplus", "resnet34"),
    "manet": ("manet", "resnet34"),
    "linknet": ("linknet", "resnet34"),
    "fpn": ("fpn", "resnet34"),
    "pspnet": ("pspnet", "resnet34"),
    "pan": ("pan", "resnet34"),
    "deeplabv3": ("deeplabv3", "resnet34"),
    "deeplabv3plus": ("deeplabv3plus", "resnet34"),
    "upernet": ("upernet", "resnet34"),
    "segformer": ("segformer", "mit_b0"),
}

# PAN's feature pyramid attention pools its stride-16 features three more times: at least 8 x 8 of them.
_MIN_SIZE = {"pan": 128}


def build_smp(
    arch: str, in_channels: int, classes: int, encoder: str, encoder_weights: str | None, **kwargs: Any
) -> nn.Module:
    """One smp model, wrapped so that any H x W goes in and the same H x W comes out."""
    import segmentation_models_pytorch as smp

    weights = resolve_encoder_weights(encoder, encoder_weights)
    list_keys = ("decoder_channels", "decoder_pyramid_channels", "decoder_atrous_rates", "psp_out_channels")
    kwargs = {k: tuple(v) if isinstance(v, list) and k in list_keys else v for k, v in kwargs.items()}
    try:
        with hub_offline(), warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=r".*`timm-` encoders are deprecated.*")
            net = smp.create_model(
                arch,
                encoder_name=encoder,
                encoder_weights=weights,
                in_channels=in_channels,
                classes=classes,
                **kwargs,
            )
    except (KeyError, TypeError, ValueError, RuntimeError) as error:
        if isinstance(error, ConfigError):
            raise
        raise ConfigError(f"model.arch={arch} with model.encoder={encoder}: {error}") from error
    return PadToMultiple(net, stride_of(net), _MIN_SIZE.get(arch, 0))


def stride_of(net: nn.Module) -> int:
    """The input multiple an smp model needs: its encoder's output stride (32 for most encoders)."""
    encoder = getattr(net, "encoder", None)
    stride = getattr(encoder, "output_stride", 32)
    return int(stride) if stride else 32


def _make_builder(option: str, smp_arch: str, default_encoder: str) -> None:
    def builder(
        in_channels: int,
        classes: int,
        encoder: str = default_encoder,
        encoder_weights: str | None = None,
        **kwargs: Any,
    ) -> nn.Module:
        return build_smp(smp_arch, in_channels, classes, encoder, encoder_weights, **kwargs)

    builder.__name__ = f"build_{option}"
    builder.__doc__ = (
        f"smp's ``{smp_arch}`` (default encoder {default_encoder}, random init unless ``encoder_weights``); "
        "further keyword arguments go to its constructor."
    )
    register(option)(builder)


for _option, (_smp_arch, _encoder) in SMP_ARCHITECTURES.items():
    _make_builder(_option, _smp_arch, _encoder)
