"""The architecture registry: ``create_model(arch, in_channels, classes, ...)`` builds any ``model=`` option.

``in_channels`` comes from the channel strategy and ``classes`` from the target, so neither is ever
typed in a model config.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

import torch
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


def _check_options(arch: str, builder: ModelBuilder, options: dict[str, Any]) -> None:
    """Name a misspelled model option here, instead of a TypeError deep inside a constructor."""
    parameters = inspect.signature(builder).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values()):
        return  # the builder forwards extra options to a library that checks them itself
    valid = sorted(n for n in parameters if n not in ("in_channels", "classes"))
    unknown = sorted(set(options) - set(valid))
    if unknown:
        raise ConfigError(
            f"Unknown option(s) {', '.join(f'model.{k}' for k in unknown)} for model.arch '{arch}'. "
            f"Valid options: {', '.join(valid)}."
        )


def create_model(
    arch: str, in_channels: int, classes: int, channels_last: bool = False, **options: Any
) -> nn.Module:
    """Build the network named ``arch`` for ``in_channels`` inputs and ``classes`` output logits.

    ``channels_last`` stores the weights in NHWC order, which tensor-core convolutions run faster on
    (a convolution whose weights are channels-last computes channels-last, whatever its input's order).
    """
    from cellseg import models  # noqa: F401  (importing the package registers every architecture)

    if arch not in ARCHITECTURES:
        raise ConfigError(f"Unknown model.arch '{arch}'. Available: {', '.join(sorted(ARCHITECTURES))}.")
    if in_channels < 1 or classes < 1:
        raise ConfigError(
            f"A model needs in_channels >= 1 and classes >= 1, got {in_channels} and {classes}."
        )
    builder = ARCHITECTURES[arch]
    _check_options(arch, builder, options)
    net = builder(in_channels=in_channels, classes=classes, **options)
    if not isinstance(channels_last, bool):
        raise ConfigError(f"model.channels_last is {channels_last!r}; expected true or false.")
    return net.to(memory_format=torch.channels_last) if channels_last else net
