"""Per-layer statistics of a network (seed 000's ``model_stats``): output shape, activations, weights and
mult-adds of every layer that computes or resamples, from one hooked forward pass.

Convolutions, transposed convolutions, linear layers, pooling, unpooling, upsampling and pixel shuffle
are rows; BN, activations and dropout are folded into the layer before them. Weights are
``weight.numel()`` (biases and BN not counted, as in seed 000); mult-adds are
``kh*kw*Cin/groups*Cout*Hout*Wout`` for a convolution, ``kh*kw*Cin/groups*Cout*Hin*Win`` for a
transposed one, ``in*out`` per position for a linear layer. Functional operations (``torch.cat``,
``F.interpolate``, additions) are not layers and do not appear. A layer that is the only row inside its
block is named after the block (``conv1-1``, not ``conv1-1.0``); size-adapting wrappers are left out of
the names.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
from rich.table import Table
from torch import nn

from cellseg.errors import ConfigError
from cellseg.models.padding import MirrorTile, PadToMultiple
from cellseg.utils.io import write_atomic, write_csv_atomic

LAYER_TYPES: tuple[type[nn.Module], ...] = (
    nn.modules.conv._ConvNd,
    nn.Linear,
    nn.modules.pooling._MaxPoolNd,
    nn.modules.pooling._AvgPoolNd,
    nn.modules.pooling._AdaptiveAvgPoolNd,
    nn.modules.pooling._AdaptiveMaxPoolNd,
    nn.modules.pooling._MaxUnpoolNd,
    nn.Upsample,
    nn.PixelShuffle,
)
COLUMNS = ("layer", "output (C x H x W)", "activations", "weights", "mult-adds")


@dataclass(frozen=True)
class LayerStats:
    """One row of the table."""

    name: str
    shape: tuple[int, ...]
    activations: int
    weights: int
    mult_adds: int

    @property
    def shape_text(self) -> str:
        return " x ".join(str(s) for s in self.shape)


@dataclass
class ModelStats:
    """The rows, input first, and the model's totals."""

    rows: list[LayerStats] = field(default_factory=list)
    params_total: int = 0
    params_trainable: int = 0

    @property
    def weights(self) -> int:
        return sum(r.weights for r in self.rows)

    @property
    def activations(self) -> int:
        return sum(r.activations for r in self.rows)

    @property
    def mult_adds(self) -> int:
        return sum(r.mult_adds for r in self.rows)

    def table(self) -> list[list[str]]:
        """Rows as strings, with thousands separators, the totals last."""
        body = [
            [r.name, r.shape_text, f"{r.activations:,}", f"{r.weights:,}", f"{r.mult_adds:,}"]
            for r in self.rows
        ]
        body.append(["total", "", f"{self.activations:,}", f"{self.weights:,}", f"{self.mult_adds:,}"])
        return body

    def summary(self) -> str:
        return (
            f"parameters: {self.params_total:,} (trainable {self.params_trainable:,}; weights of the layers "
            f"above {self.weights:,}, the rest are biases and normalisation), mult-adds {self.mult_adds:,}, "
            f"activations {self.activations:,} per image"
        )

    def csv_rows(self) -> list[dict[str, object]]:
        """The rows for a CSV file, plain numbers, the totals last."""
        rows: list[dict[str, object]] = [
            {
                "layer": r.name,
                "output_shape": "x".join(map(str, r.shape)),
                "activations": r.activations,
                "weights": r.weights,
                "mult_adds": r.mult_adds,
            }
            for r in self.rows
        ]
        total = {"activations": self.activations, "weights": self.weights, "mult_adds": self.mult_adds}
        rows.append({"layer": "total", "output_shape": "", **total})
        return rows

    def write(self, stem: Path, title: str) -> None:
        """``<stem>.csv`` and ``<stem>.md`` (atomically; the folder is created)."""
        write_csv_atomic(stem.with_suffix(".csv"), self.csv_rows())
        text = self.markdown(title)
        write_atomic(stem.with_suffix(".md"), lambda handle: handle.write(text.encode()))

    def markdown(self, title: str = "") -> str:
        lines = [f"# {title}", ""] if title else []
        lines += [
            "| " + " | ".join(COLUMNS) + " |",
            "| --- | :---: | ---: | ---: | ---: |",
            *("| " + " | ".join(cells) + " |" for cells in self.table()),
            "",
            self.summary(),
            "",
        ]
        return "\n".join(lines)

    def rich_table(self, title: str = "") -> Table:
        table = Table(title=title, title_justify="left")
        for index, column in enumerate(COLUMNS):
            table.add_column(column, justify="left" if index == 0 else "center" if index == 1 else "right")
        rows = self.table()
        for index, cells in enumerate(rows):
            table.add_row(*cells, end_section=index == len(rows) - 2)
        return table


def _mult_adds(module: nn.Module, inputs: tuple, output: torch.Tensor) -> int:
    if isinstance(module, nn.modules.conv._ConvNd):
        kernel = int(torch.tensor(module.kernel_size).prod())
        per_position = kernel * (module.in_channels // module.groups) * module.out_channels
        spatial = inputs[0] if isinstance(module, nn.modules.conv._ConvTransposeNd) else output
        return per_position * int(torch.tensor(spatial.shape[2:]).prod())
    if isinstance(module, nn.Linear):
        return (
            module.in_features
            * module.out_features
            * (output.numel() // output.shape[0] // module.out_features)
        )
    return 0


def _display_names(net: nn.Module, layer_names: Sequence[str]) -> dict[str, str]:
    """Each layer's shortest enclosing block that holds no other layer, wrappers' ``net.`` dropped."""
    wrappers = {name for name, m in net.named_modules() if isinstance(m, (PadToMultiple, MirrorTile))}
    names = {}
    for layer in layer_names:
        parts = layer.split(".")
        label = layer
        for depth in range(1, len(parts) + 1):
            prefix = ".".join(parts[:depth])
            inside = [n for n in layer_names if n == prefix or n.startswith(prefix + ".")]
            if inside == [layer] and prefix not in wrappers:
                label = prefix
                break
        for wrapper in sorted(wrappers, key=len, reverse=True):
            wrapped = f"{wrapper}.net." if wrapper else "net."
            if label.startswith(wrapped):
                label = label[len(wrapped) :]
        names[layer] = label
    return names


@torch.no_grad()
def model_stats(net: nn.Module, input_shape: Sequence[int]) -> ModelStats:
    """Run one zero image of ``input_shape`` (C, H, W) through ``net`` and tabulate its layers.

    The network is put in eval mode for the pass and its hooks are removed afterwards, so a live
    training module can be measured.
    """
    if len(input_shape) != 3 or min(int(s) for s in input_shape) < 1:
        raise ConfigError(f"input_shape must be [C, H, W] with positive sizes, got {list(input_shape)}.")
    layers = [(name, m) for name, m in net.named_modules() if isinstance(m, LAYER_TYPES)]
    labels = _display_names(net, [name for name, _ in layers])
    stats = ModelStats(
        params_total=sum(p.numel() for p in net.parameters()),
        params_trainable=sum(p.numel() for p in net.parameters() if p.requires_grad),
    )
    x = torch.zeros(1, *(int(s) for s in input_shape), device=next(net.parameters()).device)
    stats.rows.append(LayerStats("input", tuple(x.shape[1:]), x.numel(), 0, 0))
    seen: dict[str, int] = {}

    def hook(name: str):
        def record(module: nn.Module, inputs: tuple, output) -> None:
            out = output[0] if isinstance(output, (tuple, list)) else output
            label = labels[name]
            seen[label] = seen.get(label, 0) + 1
            if seen[label] > 1:
                label = f"{label} ({seen[label]})"  # a module called more than once
            weight = getattr(module, "weight", None)
            weights = weight.numel() if isinstance(weight, torch.Tensor) else 0
            stats.rows.append(
                LayerStats(label, tuple(out.shape[1:]), out.numel(), weights, _mult_adds(module, inputs, out))
            )

        return record

    handles = [m.register_forward_hook(hook(name)) for name, m in layers]
    was_training = net.training
    try:
        net.eval()
        net(x)
    finally:
        for handle in handles:
            handle.remove()
        net.train(was_training)
    return stats
