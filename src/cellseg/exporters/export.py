"""Export a loaded checkpoint's network, dynamic first when asked, and keep the file only if parity holds."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from cellseg import __version__
from cellseg.exporters.common import ExportError, Shape
from cellseg.exporters.onnx import ONNX_INPUT, ONNX_OUTPUT, export_onnx, onnx_runner
from cellseg.exporters.parity import parity, parity_failure, parity_input, parity_shapes
from cellseg.exporters.settings import ExportSettings
from cellseg.exporters.torchscript import export_torchscript, torchscript_runner
from cellseg.exporters.wrappers import AlwaysPad
from cellseg.inference.checkpoint import LoadedModel
from cellseg.models.padding import PadToMultiple, input_multiple
from cellseg.utils.io import atomic_path, write_json_atomic

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Attempt:
    """One way of exporting: shape-dynamic (checked at several sizes) or fixed to ``input_size``."""

    dynamic: bool
    shapes: tuple[Shape, ...]


def build_metadata(model: LoadedModel, settings: ExportSettings, dynamic: bool) -> dict[str, Any]:
    """What a consumer of the file needs to feed it images and read its output.

    The exporters add ``exporter`` (and ONNX its ``opset``) before storing it in the file.
    """
    multiple = input_multiple(model.net)
    metadata: dict[str, Any] = {
        "class_names": list(model.class_names),
        "regression_names": list(model.layout.regression_names),
        "decoding": model.target.decoding,
        "channel_names": list(model.channel_names),
        "in_channels": model.in_channels,
        "pipeline": model.pipeline,
        # Images must be resized by this factor before the network, its outputs back (data.scale).
        "scale": model.scale,
        "model": model.hparams.get("model"),
        "input_size": list(settings.input_size),
        "dynamic": dynamic,
        "input_multiple": multiple,
        "output": (
            "logits (B, K, H, W), K = len(class_names)"
            if not model.layout.has_regression
            else "(B, K + R, H, W): K class logits (softmax them), then the R regression_names maps (linear)"
        ),
        "format": settings.format,
        "cellseg_version": __version__,
    }
    if dynamic and isinstance(model.net, PadToMultiple) and settings.format == "onnx":
        metadata["min_side"] = AlwaysPad(model.net).min_side
    if settings.format == "onnx":
        metadata.update(input_name=ONNX_INPUT, output_name=ONNX_OUTPUT)
    return metadata


def _attempts(settings: ExportSettings, channels: int, multiple: int) -> list[Attempt]:
    fixed = Attempt(False, parity_shapes(channels, settings.input_size, multiple, False))
    if not settings.dynamic:
        return [fixed]
    return [Attempt(True, parity_shapes(channels, settings.input_size, multiple, True)), fixed]


def export_checked(
    net: nn.Module,
    channels: int,
    settings: ExportSettings,
    describe: Callable[[bool], dict[str, Any]],
    path: Path,
    multiple: int | None = None,
) -> dict[str, Any]:
    """Export ``net`` into ``path`` as ``settings.format`` (dynamic first when asked), check parity.

    ``describe(dynamic)`` gives the metadata stored in the file; ``multiple`` is the network's stride
    when ``net`` wraps the network (the parity shapes test sizes on and off it). Returns the report of
    the export kept; raises ExportError when no attempt exports within tolerance.
    """
    example = parity_input(parity_shapes(channels, settings.input_size, 1, False)[0], 0)
    fallback_reason = None
    for attempt in _attempts(settings, channels, multiple or input_multiple(net)):
        wanted = describe(attempt.dynamic)
        try:
            if settings.format == "onnx":
                metadata = export_onnx(net, example, path, attempt.dynamic, wanted, settings.opset)
                run = onnx_runner(path)
            else:
                metadata = export_torchscript(net, example, path, attempt.dynamic, wanted)
                run = torchscript_runner(path)
        except ExportError as error:
            if not attempt.dynamic:
                raise ExportError(f"{settings.ckpt}: {settings.format} export failed: {error}.") from error
            fallback_reason = str(error)
            log.warning(
                "Dynamic %s export not possible (%s); exporting a fixed-size one.", settings.format, error
            )
            continue
        checks = parity(net, run, attempt.shapes)
        failure = parity_failure(checks, settings.tolerance)
        if failure is None:
            return {
                "exporter": metadata["exporter"],
                "dynamic": attempt.dynamic,
                "dynamic_fallback_reason": fallback_reason,
                "parity": checks,
                "max_abs_diff": max(c["max_abs_diff"] for c in checks),
                "metadata": metadata,
            }
        if not attempt.dynamic:
            raise ExportError(
                f"{settings.ckpt}: the {settings.format} export does not reproduce the PyTorch logits: "
                f"{failure}. Nothing was written; raise tolerance=... only if that difference is acceptable."
            )
        fallback_reason = f"{metadata['exporter']}: {failure}"
        log.warning(
            "Dynamic %s export is not exact (%s); exporting a fixed-size one.", settings.format, failure
        )
    raise AssertionError("unreachable: the fixed-size attempt returns or raises")


def export_model(model: LoadedModel, settings: ExportSettings) -> dict[str, Any]:
    """Export the network, verify parity, write the file and its JSON report (both atomically).

    Returns the report. A failed export or parity check raises and leaves nothing behind.
    """
    started = time.perf_counter()
    log.info(
        "Exporting %s as %s (input %s, dynamic=%s)",
        settings.ckpt,
        settings.format,
        list(settings.input_size),
        settings.dynamic,
    )
    net = model.net.float().eval()
    with atomic_path(settings.output) as tmp:
        result = export_checked(
            net, model.in_channels, settings, lambda dynamic: build_metadata(model, settings, dynamic), tmp
        )
    size = settings.output.stat().st_size
    report = {
        "format": settings.format,
        "output": str(settings.output),
        "checkpoint": str(model.path),
        "size_mb": round(size / 2**20, 3),
        "input_shape": [1, model.in_channels, *settings.input_size],
        **{k: v for k, v in result.items() if k != "metadata"},
        "tolerance": settings.tolerance,
        "opset": result["metadata"].get("opset"),
        "torch_version": torch.__version__,
        "seconds": round(time.perf_counter() - started, 3),
        "metadata": result["metadata"],
    }
    write_json_atomic(settings.sidecar, report)
    _log_summary(report)
    return report


def _log_summary(report: dict[str, Any]) -> None:
    shapes = ", ".join("x".join(map(str, c["shape"])) for c in report["parity"])
    side = report["metadata"].get("min_side")
    sizes = (
        "fixed size"
        if not report["dynamic"]
        else f"any batch, H and W >= {side}"
        if side
        else "any batch and H x W"
    )
    log.info(
        "Exported %s: %s (%.1f MB, %s)\n  input %s, %s\n  max abs logit difference %.2e over %s",
        report["format"],
        report["output"],
        report["size_mb"],
        report["exporter"],
        "x".join(map(str, report["input_shape"])),
        sizes,
        report["max_abs_diff"],
        shapes,
    )
