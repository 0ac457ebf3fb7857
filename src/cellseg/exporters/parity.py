"""The parity check: the exported file's logits against the PyTorch network's on seeded random inputs."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from cellseg.exporters.common import Runner, Shape, first_line


def parity_shapes(channels: int, size: tuple[int, int], multiple: int, dynamic: bool) -> tuple[Shape, ...]:
    """The input shapes the export is checked at: ``input_size``, and other batch sizes and H x W if dynamic.

    The second is a stride multiple (no padding needed), the third is off the stride (padding needed),
    so a frozen padding decision shows up in one of them.
    """
    height, width = size
    shapes: list[Shape] = [(1, channels, height, width)]
    if dynamic:
        up_h, up_w = (n + (-n) % multiple + multiple for n in size)
        shapes.append((2, channels, up_h, up_w))
        shapes.append((1, channels, up_h + multiple // 2 + 1, up_w + multiple // 2 + 3))
    return tuple(shapes)


def parity_input(shape: Shape, seed: int) -> torch.Tensor:
    """The same pseudo-random image for every run (normalised inputs are roughly standard normal)."""
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float32)


def parity(net: nn.Module, run: Runner, shapes: Sequence[Shape]) -> list[dict[str, Any]]:
    """Max abs difference of the exported file's logits from the PyTorch network's, per input shape."""
    results = []
    for seed, shape in enumerate(shapes):
        x = parity_input(shape, seed)
        with torch.no_grad():
            expected = net(x).numpy()
        try:
            got = run(x)
        except Exception as error:  # a runtime refusing the shape is a failed check
            results.append(
                {"shape": list(shape), "max_abs_diff": None, "error": f"an error ({first_line(error)})"}
            )
            continue
        if got.shape != expected.shape:
            error = f"logits of shape {list(got.shape)} instead of {list(expected.shape)}"
            results.append({"shape": list(shape), "max_abs_diff": None, "error": error})
        else:
            results.append({"shape": list(shape), "max_abs_diff": float(np.abs(got - expected).max())})
    return results


def parity_failure(checks: Sequence[dict[str, Any]], tolerance: float) -> str | None:
    """Why the parity checks fail (the first failing shape), or None when all are within tolerance."""
    for check in checks:
        shape = "x".join(map(str, check["shape"]))
        if check["max_abs_diff"] is None:
            return f"at input {shape} the exported model gives {check['error']}"
        if not check["max_abs_diff"] <= tolerance:
            return f"at input {shape} the max abs logit difference is {check['max_abs_diff']:.2e} > tolerance {tolerance:g}"
    return None
