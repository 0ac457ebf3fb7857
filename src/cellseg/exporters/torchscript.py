"""TorchScript: ``torch.jit.script`` when the network compiles (exact at any size), else ``torch.jit.trace``
at the example's size; ``cellseg.json`` travels as an extra file."""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from cellseg.exporters.common import METADATA_KEY, ExportError, Runner, first_line, metadata_json

JIT_DEPRECATED = r".*`torch\.jit\.\w+` is deprecated"


def _to_torchscript(
    net: nn.Module, example: torch.Tensor, dynamic: bool
) -> tuple[torch.jit.ScriptModule, str]:
    """Scripted when possible (exact at any size), else traced at the example's size."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=JIT_DEPRECATED)
        if dynamic:
            try:
                return torch.jit.script(net), "torch.jit.script"
            except Exception as error:  # any scripting failure means: trace instead
                raise ExportError(
                    f"torch.jit.script cannot compile this network ({first_line(error)})"
                ) from error
        warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
        try:
            with torch.no_grad():
                return torch.jit.trace(net, example, check_trace=False), "torch.jit.trace"
        except Exception as error:  # the tracer's errors come in many types; all mean "cannot"
            raise ExportError(f"torch.jit.trace failed ({first_line(error)})") from error


def export_torchscript(
    net: nn.Module, example: torch.Tensor, path: Path, dynamic: bool, metadata: dict[str, Any]
) -> dict[str, Any]:
    """Write the network to ``path`` with ``cellseg.json`` as an extra file; returns that metadata."""
    module, method = _to_torchscript(net, example, dynamic)
    metadata = {**metadata, "exporter": method}
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=JIT_DEPRECATED)
        torch.jit.save(module, str(path), _extra_files={METADATA_KEY: metadata_json(metadata)})
    return metadata


def _jit_load(path: str | Path, extra_files: dict[str, Any] | None = None) -> torch.jit.ScriptModule:
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=JIT_DEPRECATED)
        return torch.jit.load(str(path), map_location="cpu", _extra_files=extra_files)


def torchscript_runner(path: Path) -> Runner:
    module = _jit_load(path)

    def run(x: torch.Tensor) -> np.ndarray:
        with torch.no_grad():
            return module(x).numpy()

    return run


def read_torchscript_metadata(path: str | Path) -> dict[str, Any]:
    """The ``cellseg.json`` stored in an exported TorchScript file."""
    extra = {METADATA_KEY: ""}
    _jit_load(path, extra)
    return json.loads(extra[METADATA_KEY])
