"""ONNX: torch's dynamo exporter, behind :class:`~cellseg.exporters.wrappers.AlwaysPad` when shape-dynamic;
``cellseg.json`` travels in ``metadata_props``; onnxruntime runs the parity check."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import torch
from torch import nn

from cellseg.errors import ConfigError
from cellseg.exporters.common import (
    METADATA_KEY,
    ExportError,
    Runner,
    check_installed,
    first_line,
    metadata_json,
    quiet,
)
from cellseg.exporters.wrappers import AlwaysPad
from cellseg.models.padding import PadToMultiple

ONNX_PACKAGES = ("onnx", "onnxscript", "onnxruntime")

ONNX_INPUT, ONNX_OUTPUT = "image", "logits"


def check_onnx_installed() -> None:
    """format=onnx needs the exporter (onnx, onnxscript) and onnxruntime for the parity check."""
    check_installed("onnx", ONNX_PACKAGES, "onnx", " (or use format=torchscript)")


def _onnx_module(net: nn.Module, dynamic: bool) -> tuple[nn.Module, tuple[dict[int, Any], ...] | None]:
    """The module to export and its dynamic axes (batch, and H, W from the smallest valid side)."""
    if not dynamic:
        return net, None
    from torch.export import Dim

    module = AlwaysPad(net).eval() if isinstance(net, PadToMultiple) else net
    side = getattr(module, "min_side", 1)
    axes = {0: Dim("batch"), 2: Dim("height", min=side), 3: Dim("width", min=side)}
    return module, (axes,)


def export_onnx(
    net: nn.Module,
    example: torch.Tensor,
    path: Path,
    dynamic: bool,
    metadata: dict[str, Any],
    opset: int | None,
) -> dict[str, Any]:
    """Export with the dynamo exporter, add ``cellseg.json`` to metadata_props, write ``path``.

    Returns the metadata stored, with the exporter and the opset it used.
    """
    import onnx

    module, dynamic_shapes = _onnx_module(net, dynamic)
    side = getattr(module, "min_side", 1)
    if dynamic and min(example.shape[-2:]) < side:
        raise ExportError(f"input_size {list(example.shape[-2:])} is below the smallest dynamic side {side}")
    method = "torch.onnx.export(dynamo=True)"
    try:
        with (
            warnings.catch_warnings(),
            quiet("onnxscript", "onnx_ir", "torch.fx.experimental.symbolic_shapes"),
        ):
            warnings.simplefilter("ignore")
            program = torch.onnx.export(
                module,
                (example,),
                None,
                dynamo=True,
                input_names=[ONNX_INPUT],
                output_names=[ONNX_OUTPUT],
                opset_version=opset,
                dynamic_shapes=dynamic_shapes,
                verbose=False,
            )
    except Exception as error:  # exporter errors come in many types; all mean "cannot"
        raise ExportError(f"{method} failed ({first_line(error)})") from error
    proto = program.model_proto
    used = next((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), opset)
    if opset is not None and used != opset:  # the exporter converts below its own opset only where it can
        raise ConfigError(
            f"opset={opset}: the exporter produced opset {used} for this network and could not convert it; "
            f"use opset=null (its default) or opset>={used}."
        )
    metadata = {**metadata, "exporter": method, "opset": used}
    entry = proto.metadata_props.add()
    entry.key, entry.value = METADATA_KEY, metadata_json(metadata)
    onnx.save_model(proto, str(path))
    return metadata


def onnx_runner(path: Path) -> Runner:
    import onnxruntime as ort

    try:
        options = ort.SessionOptions()
        options.log_severity_level = 4  # a failing shape is reported by the parity check, in one line
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except Exception as error:  # onnxruntime raises its own types for graphs it cannot run
        raise ExportError(f"onnxruntime cannot load the exported model ({first_line(error)})") from error
    name = session.get_inputs()[0].name
    return lambda x: session.run(None, {name: x.numpy()})[0]
