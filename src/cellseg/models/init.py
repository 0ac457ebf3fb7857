"""Weight initialisation schemes of the seed projects, selectable by name (``model.init``)."""

from __future__ import annotations

import math

from torch import nn

from cellseg.errors import ConfigError

INIT_SCHEMES = ("default", "he", "normal")
_CONVS = (nn.Conv2d, nn.ConvTranspose2d)


def initialize(net: nn.Module, scheme: str) -> None:
    """Re-initialise the convolutions of ``net`` in place.

    - ``default``: PyTorch's own (Kaiming-uniform with a=sqrt(5)); seeds 000, 001's decoder heads, 003.
    - ``he``: He normal N(0, sqrt(2 / (k*k*C_out))), bias 0, as the U-Net paper and seed 004.
    - ``normal``: N(0, 0.02) on every conv weight, biases left as they are (seed 002's ``init_weights``).
    """
    if scheme not in INIT_SCHEMES:
        raise ConfigError(f"model.init must be one of {', '.join(INIT_SCHEMES)}, got '{scheme}'.")
    if scheme == "default":
        return
    for module in net.modules():
        if not isinstance(module, _CONVS):
            continue
        if scheme == "he":
            kh, kw = module.kernel_size
            fan_out = kh * kw * module.out_channels
            nn.init.normal_(module.weight, 0.0, math.sqrt(2.0 / fan_out))
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        else:
            nn.init.normal_(module.weight, 0.0, 0.02)
