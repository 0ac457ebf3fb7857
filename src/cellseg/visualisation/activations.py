"""The strongest activation map of chosen layers on one image (seed 000's ``max_activation``).

For each layer, the channel whose activation has the highest mean over the image is shown (plasma
colour map, as seed 000), next to the input. Layers are named as the network's modules are
(``decoder.blocks.0``; ``python -m cellseg.show activations layers=[nonsense]`` lists them all).

By default the layers are the network's stages from its coarsest feature map back to full size, coarse to
fine, found from one pass on a small blank probe. A *stage* is a module with weights whose inner modules
all work at its own resolution level (an upsampling block: also at the next coarser one); after the first
module that reaches the coarsest level, the last stage to finish at each level is taken, leaving out the
output head and the steps inside another level's stage. For the U-Net ladders that is the deepest encoder
stage and ``decoder.blocks.0..4`` (smp U-Net, U-Net++, LinkNet), ``bottleneck`` and ``up.0..3``
(``unet_classic``), ``middle``, ``blocks.0..3`` and ``res`` (``unet_pixelshuffle``) and, as seed 000 chose
them, the last deconvolution of each stage (DeConvNet, SegSkipNet). Decoders that pool a pyramid
(FPN, PSPNet, DeepLab, PAN, UPerNet, SegFormer) have no such ladder: name their layers with ``layers=``.
The network runs on the whole image, mirror-padded to its stride as in training and prediction, so the
maps of an image whose size is not a multiple of the stride include the padding.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from matplotlib.figure import Figure
from torch import nn
from tqdm import tqdm

from cellseg.callbacks.image_grid import composite
from cellseg.data.io import read_planes
from cellseg.errors import ConfigError
from cellseg.inference.inputs import InputPipeline, split_planes
from cellseg.models.encoders import unwrap
from cellseg.visualisation.figures import image_axes, panel_figure, show_image

#: Side of the blank probe image that finds the default layers; panels per row of the figure.
PROBE_SIZE, MAX_COLUMNS = 128, 6


@dataclass(frozen=True)
class StrongestMap:
    """A layer's most active channel on the image: its index, the layer's channel count and the map."""

    layer: str
    channel: int
    channels: int
    values: np.ndarray  # (h, w) float32


def read_input(path: str | Path, pipeline: Mapping[str, Any], index: int = 0) -> np.ndarray:
    """Image ``index`` of a file as model input (C, H, W) float32, with the checkpoint's channels and
    normalisation (the file's planes read as ``python -m cellseg.predict pages=auto`` reads them)."""
    path = Path(path).expanduser()
    images = split_planes(read_planes(path), len(pipeline["channel_names"]), "auto", path)
    return InputPipeline.from_pipeline(pipeline)(images[index])


def layer_names(net: nn.Module) -> list[str]:
    """Every named module of the network (inside its size wrapper), in module order."""
    return [name for name, _ in unwrap(net).named_modules() if name]


def check_layers(net: nn.Module, layers: Sequence[str]) -> list[str]:
    """``layers`` when every one is a module of the network, else a ConfigError listing the valid names."""
    valid = layer_names(net)
    unknown = [name for name in layers if name not in valid]
    if unknown:
        close = difflib.get_close_matches(unknown[0], valid, n=1)
        hint = f" Did you mean '{close[0]}'?" if close else ""
        raise ConfigError(
            f"layers: {', '.join(repr(n) for n in unknown)} is not a layer of {type(unwrap(net)).__name__}.{hint} "
            f"Its layers: {', '.join(valid)}."
        )
    return list(layers)


def _feature_map(output: Any) -> torch.Tensor | None:
    """The (B, C, H, W) tensor a module returned (the first one of a tuple), or None."""
    if isinstance(output, tuple | list) and output:
        output = output[0]
    return output if isinstance(output, torch.Tensor) and output.ndim == 4 else None


def _hooked_pass(
    net: nn.Module, names: Sequence[str], x: torch.Tensor, record: Callable[[str, torch.Tensor], None]
) -> None:
    """One forward pass of ``x`` calling ``record(name, output)`` as each named module finishes."""
    inner = unwrap(net)
    handles = []
    for name in names:

        def hook(_module: nn.Module, _inputs: Any, output: Any, name: str = name) -> None:
            features = _feature_map(output)
            if features is not None:
                record(name, features)

        handles.append(inner.get_submodule(name).register_forward_hook(hook))
    try:
        with torch.no_grad():
            net(x)
    finally:
        for handle in handles:
            handle.remove()


def default_layers(net: nn.Module, in_channels: int) -> list[str]:
    """The network's stages from its coarsest feature map back to full size, coarse to fine (see above)."""
    inner = unwrap(net)
    names = layer_names(net)
    finished: list[tuple[str, int]] = []  # (module, output height) in the order modules finish
    device = next(net.parameters()).device
    _hooked_pass(net, names, torch.zeros(1, in_channels, PROBE_SIZE, PROBE_SIZE, device=device),
                 lambda name, out: finished.append((name, int(out.shape[-2]))))  # fmt: skip
    if not finished:
        return []
    widest = max(height for _, height in finished)
    level = {name: round(math.log2(widest / height)) for name, height in finished}  # the last call's
    order = {name: position for position, (name, _) in enumerate(finished)}  # position of the last call
    head = finished[-1][0]  # the output layer finishes last
    coarsest = max(level.values())
    start = min(position for position, (name, _) in enumerate(finished) if level[name] == coarsest)

    def stage_like(name: str) -> bool:
        """Has weights, and works at one level (an upsampling block: also the next coarser one)."""
        within = {level[other] for other in level if other.startswith(name + ".")}
        has_weights = any(True for _ in inner.get_submodule(name).parameters())
        return has_weights and within <= {level[name], level[name] + 1}

    def eligible(name: str) -> bool:
        ancestors = [p for p in level if name.startswith(p + ".") and stage_like(p)]
        return (
            order[name] >= start
            and name != head
            and not name.startswith(head + ".")
            and stage_like(name)
            and all(level[a] == level[name] for a in ancestors)  # not a step inside another level's stage
        )

    last_at: dict[int, str] = {}
    for name in sorted((n for n in level if eligible(n)), key=order.__getitem__):
        last_at[level[name]] = name
    return [last_at[lvl] for lvl in sorted(last_at, reverse=True)]


def strongest_maps(
    net: nn.Module, model_input: np.ndarray, layers: Sequence[str], progress: bool = True
) -> list[StrongestMap]:
    """Each layer's channel of highest mean activation on ``model_input`` (C, H, W), in ``layers`` order."""
    found: dict[str, StrongestMap] = {}
    device = next(net.parameters()).device
    with tqdm(total=len(layers), desc="activations", unit="layer", disable=not progress) as bar:

        def record(name: str, out: torch.Tensor) -> None:
            features = out[0].float()
            channel = int(features.mean(dim=(1, 2)).argmax())
            if name not in found:
                bar.update(1)
            found[name] = StrongestMap(name, channel, int(features.shape[0]), features[channel].cpu().numpy())

        _hooked_pass(net, layers, torch.from_numpy(model_input)[None].to(device), record)
    missing = [name for name in layers if name not in found]
    if missing:
        raise ConfigError(
            f"layers: {', '.join(missing)} gave no feature map on this image (the layer did not run, or its "
            "output is not a (B, C, H, W) tensor); choose layers that output feature maps."
        )
    return [found[name] for name in layers]


def activations_figure(
    model_input: np.ndarray, maps: Sequence[StrongestMap], input_title: str, panel: int = 200, title: str = ""
) -> Figure:
    """The input (its first three channels as RGB), then each layer's strongest map."""
    panels = 1 + len(maps)
    cols = min(panels, MAX_COLUMNS)
    rows = math.ceil(panels / cols)
    figure = panel_figure(rows, cols, panel, title or "strongest activations")
    axes = image_axes(figure, rows, cols).flat
    show_image(axes[0], composite(torch.from_numpy(model_input)).permute(1, 2, 0).numpy(), input_title)
    for ax, found in zip(axes[1:], maps, strict=False):
        height, width = found.values.shape
        show_image(
            ax,
            found.values,
            f"{found.layer}\nchannel {found.channel} of {found.channels}, {height}x{width}",
            cmap="plasma",
        )
    return figure
