"""A loss as a weighted sum of named terms, configured in one YAML option and swept by short names."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn

from cellseg.errors import ConfigError
from cellseg.losses.base import SegmentationLoss, check_number
from cellseg.losses.binary import BinaryCrossEntropyLoss
from cellseg.losses.cross_entropy import CrossEntropyLoss, FocalLoss, UNetWeightedCrossEntropyLoss
from cellseg.losses.lovasz import LovaszSoftmaxLoss
from cellseg.losses.overlap import DiceLoss, TverskyLoss
from cellseg.losses.regression import MSELoss, SmoothL1Loss

#: Term name -> class. Every class is also a loss on its own (``loss=<name>``).
LOSS_TERMS: dict[str, type[SegmentationLoss]] = {
    "ce": CrossEntropyLoss,
    "bce": BinaryCrossEntropyLoss,
    "dice": DiceLoss,
    "focal": FocalLoss,
    "tversky": TverskyLoss,
    "lovasz": LovaszSoftmaxLoss,
    "unet_weighted_ce": UNetWeightedCrossEntropyLoss,
    "mse": MSELoss,
    "smooth_l1": SmoothL1Loss,
}
_RESERVED = ("num_classes", "ignore_index")


class CompositeLoss(nn.Module):
    """L = sum_t weight_t * L_t over the named ``terms`` (e.g. nnU-Net's ``ce`` + ``dice``, 1:1).

    - ``terms``: ``{name: {argument: value, ...}}`` with ``name`` one of :data:`LOSS_TERMS` and the
      arguments of that term's class (``{}`` or null for its defaults).
    - ``<name>_weight`` keyword arguments: the weight of term ``name`` (default 1; 0 switches it off).
      They are top-level keys so that a sweep is one short override: ``loss.dice_weight=0,0.5,1``.
    - ``class_weights`` / ``cell_weight``: handed to every term that takes class weights (``ce``,
      ``focal``, ``unet_weighted_ce``), so ``loss.cell_weight=5`` reaches the CE inside ``dice_ce``.

    After each forward, :attr:`last_terms` holds every active term's unweighted value (detached 0-dim
    tensors) for logging as ``<stage>/loss_<name>``.
    """

    def __init__(
        self,
        num_classes: int,
        terms: Mapping[str, Mapping[str, Any] | None],
        ignore_index: int = -100,
        class_weights: Sequence[float] | str | None = None,
        cell_weight: float | None = None,
        **term_weights: float,
    ) -> None:
        super().__init__()
        if not isinstance(terms, Mapping) or not terms:
            raise ConfigError(f"loss.terms must map term names to their arguments, got {terms!r}.")
        unknown = [name for name in terms if name not in LOSS_TERMS]
        if unknown:
            raise ConfigError(
                f"Unknown loss term(s) {', '.join(map(repr, unknown))} in loss.terms. "
                f"Valid terms: {', '.join(LOSS_TERMS)}."
            )
        valid_weight_keys = [f"{name}_weight" for name in terms]
        stray = sorted(set(term_weights) - set(valid_weight_keys))
        if stray:
            raise ConfigError(
                f"Unknown loss key(s) {', '.join(f'loss.{k}' for k in stray)}. A composite loss takes terms, "
                f"class_weights, cell_weight and one weight per term: {', '.join(valid_weight_keys)}."
            )
        shared = {
            k: v for k, v in (("class_weights", class_weights), ("cell_weight", cell_weight)) if v is not None
        }
        if shared and not any(LOSS_TERMS[name].accepts_class_weights for name in terms):
            raise ConfigError(
                f"loss.{next(iter(shared))} is set but no term of this loss takes class weights "
                f"(terms: {', '.join(terms)}; class-weighted terms: "
                f"{', '.join(n for n, c in LOSS_TERMS.items() if c.accepts_class_weights)})."
            )

        self.weights: dict[str, float] = {}
        modules: dict[str, nn.Module] = {}
        for name, spec in terms.items():
            arguments = dict(spec or {})
            for key in _RESERVED:
                if key in arguments:
                    raise ConfigError(f"loss.terms.{name}.{key} is set by cellseg from the data; remove it.")
            if "weight" in arguments:
                raise ConfigError(
                    f"loss.terms.{name}.weight: give term weights as loss.{name}_weight instead."
                )
            if LOSS_TERMS[name].accepts_class_weights:
                for key, value in shared.items():
                    if arguments.get(key) is not None:
                        raise ConfigError(f"loss.{key} and loss.terms.{name}.{key} are both set; give one.")
                    arguments[key] = value
            modules[name] = LOSS_TERMS[name](num_classes=num_classes, ignore_index=ignore_index, **arguments)
            self.weights[name] = check_number(f"{name}_weight", term_weights.get(f"{name}_weight", 1.0), 0.0)
        if not any(w > 0 for w in self.weights.values()):
            raise ConfigError(f"At least one loss term weight must be > 0, got {self.weights}.")
        self.terms = nn.ModuleDict(modules)
        self.last_terms: dict[str, torch.Tensor] = {}

    def forward(self, logits: torch.Tensor, batch: Mapping[str, torch.Tensor]) -> torch.Tensor:
        total: torch.Tensor | float = 0.0
        values: dict[str, torch.Tensor] = {}
        for name, term in self.terms.items():
            weight = self.weights[name]
            if weight == 0:
                continue
            value = term(logits, batch)
            values[name] = value.detach()
            total = total + weight * value
        self.last_terms = values
        assert isinstance(total, torch.Tensor)
        return total

    def extra_repr(self) -> str:
        return " + ".join(f"{w:g} * {n}" for n, w in self.weights.items() if not math.isclose(w, 0.0))
