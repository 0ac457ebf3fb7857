"""``python -m cellseg.stats``: per-layer statistics of a model (seed 000's ``model_stats``).

One row per layer that computes or resamples (convolutions, transposed convolutions, linear layers,
pooling, unpooling, upsampling, pixel shuffle; BN, activations and dropout are folded into the layer
before them), with its output C x H x W, activations (``output.numel()`` for one image), weights
(``weight.numel()``, biases and BN not counted, as in seed 000) and mult-adds
(``kh*kw*Cin/groups*Cout*Hout*Wout`` for a convolution, ``kh*kw*Cin/groups*Cout*Hin*Win`` for a
transposed one, ``in*out`` per position for a linear layer). Functional operations (``torch.cat``,
``F.interpolate``, additions) are not layers and do not appear.

A layer that is the only row inside its block is named after the block (``conv1-1``, not
``conv1-1.0``); size-adapting wrappers are left out of the names.

    python -m cellseg.stats model=deconvnet input_shape=[3,320,320]

prints the table and writes it as ``stats_<C>x<H>x<W>.csv`` and ``.md`` to ``outputs/stats/<model.arch>/``
(``hydra.run.dir=...`` moves it; a second run with the same model and input overwrites them). Any training override works
(``channels=brightfield``, ``model.encoder=resnet18``, ...); without ``input_shape`` the input is the
channel strategy's channel count at the training crop size.
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import hydra
import torch
from omegaconf import DictConfig, OmegaConf
from rich.console import Console
from rich.table import Table
from torch import nn

from cellseg.cli import exit_on_bad_input, run_command
from cellseg.config import config_dir
from cellseg.errors import ConfigError
from cellseg.models.encoders import unwrap
from cellseg.models.padding import MirrorTile, PadToMultiple

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

    def write_csv(self, path: Path) -> None:
        with path.open("w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(["layer", "output_shape", "activations", "weights", "mult_adds"])
            for r in self.rows:
                writer.writerow([r.name, "x".join(map(str, r.shape)), r.activations, r.weights, r.mult_adds])
            writer.writerow(["total", "", self.activations, self.weights, self.mult_adds])

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


def _input_shape(cfg: DictConfig, in_channels: int) -> list[int]:
    shape = cfg.get("input_shape")
    if shape is None:
        size = int(cfg.data.get("crop_size") or cfg.data.get("size"))
        return [in_channels, size, size]
    shape = list(OmegaConf.to_container(shape) if OmegaConf.is_list(shape) else shape)
    if len(shape) != 3 or not all(isinstance(s, int) and s > 0 for s in shape):
        raise ConfigError(
            f"input_shape must be [C,H,W] with positive integers, e.g. [3,256,256]; got {shape}."
        )
    return shape


def run_stats(cfg: DictConfig, output_dir: Path | None = None, console: Console | None = None) -> ModelStats:
    """Build ``cfg.model`` as training would, tabulate it at ``input_shape``, print and write the table."""
    from hydra.utils import instantiate

    from cellseg.models import create_model

    # The same parts training sizes its model from: channels give in_channels, the target the classes.
    channels = instantiate(cfg.channels, _convert_="all")
    target = instantiate(cfg.target, _convert_="all")
    shape = _input_shape(cfg, channels.num_channels)
    model_options = OmegaConf.to_container(cfg.model, resolve=True)
    net = create_model(in_channels=shape[0], classes=len(target.class_names), **model_options)
    stats = model_stats(net, shape)
    title = f"{cfg.model.arch} ({type(unwrap(net)).__name__}), input {' x '.join(map(str, shape))}"
    console = console or Console()
    console.print(stats.rich_table(title))
    console.print(stats.summary())
    if output_dir is not None:
        output_dir.mkdir(parents=True, exist_ok=True)
        stem = output_dir / f"stats_{'x'.join(map(str, shape))}"
        stats.write_csv(stem.with_suffix(".csv"))
        stem.with_suffix(".md").write_text(stats.markdown(title))
        console.print(f"written: {stem}.csv and {stem}.md")
    return stats


@hydra.main(version_base="1.3", config_path=str(config_dir()), config_name="stats")
def _hydra_main(cfg: DictConfig) -> None:
    exit_on_bad_input(run_stats)(cfg, Path(cfg.paths.run_dir))


def main() -> None:
    run_command("stats", _hydra_main)


if __name__ == "__main__":
    main()
