"""Finding a network's encoder, for freezing it and giving its stages their own learning rates."""

from __future__ import annotations

from torch import nn

from cellseg.models.padding import MirrorTile, PadToMultiple


def unwrap(net: nn.Module) -> nn.Module:
    """The network inside the size-adapting wrappers."""
    while isinstance(net, (PadToMultiple, MirrorTile)):
        net = net.net
    return net


def encoder_modules(net: nn.Module) -> nn.Module:
    """The encoder (contracting path) of ``net``: smp's and ``unet_pixelshuffle``'s ``.encoder``.

    Raises ValueError for networks without a separable encoder (their options have no pretrained
    encoder to protect, so a frozen-encoder schedule has nothing to do).
    """
    inner = unwrap(net)
    encoder = getattr(inner, "encoder", None)
    if not isinstance(encoder, nn.Module):
        raise ValueError(
            f"{type(inner).__name__} has no .encoder module; freezing an encoder needs a model option "
            "with one (unet_pixelshuffle or a segmentation-models-pytorch architecture)."
        )
    return encoder


def encoder_stages(net: nn.Module) -> list[list[nn.Module]]:
    """The encoder's parameter groups for discriminative learning rates, input side first.

    Two groups as fastai splits a ResNet (at ``layer3``): the stride-16 and stride-32 stages, which
    smp encoders list in ``get_stages()``, and everything before them. An encoder without that
    description is one group.
    """
    encoder = encoder_modules(net)
    try:
        deep = [m for modules in encoder.get_stages().values() for m in modules]
    except (AttributeError, NotImplementedError):
        deep = []
    deep_params = {id(p) for m in deep for p in m.parameters()}
    shallow = [
        m
        for m in encoder.children()
        if any(True for _ in m.parameters()) and not any(id(p) in deep_params for p in m.parameters())
    ]
    if not deep or not shallow:
        return [[encoder]]
    return [shallow, deep]
