"""``python -m cellseg.export``: a trained checkpoint as one standalone ONNX or TorchScript file, kept only
if it computes the same logits as the PyTorch network.

    python -m cellseg.export ckpt=outputs/train/<run>/checkpoints/best.ckpt format=onnx
    python -m cellseg.export ckpt=<run>/checkpoints/best.ckpt format=torchscript input_size=[512,512]

The file goes next to the checkpoint (``best.onnx``, ``best.torchscript.pt``) unless ``output`` names
another, with ``<output>.json`` beside it (parity figures, shapes, metadata). The exported network takes
a float32 batch ``(B, C, H, W)``, normalised as the checkpoint's pipeline says, and returns logits
``(B, K, H, W)``. Class names, channel names and the pipeline travel inside the file as ``cellseg.json``
(TorchScript ``_extra_files``, ONNX ``metadata_props``), so a consumer needs nothing else.

How each format is made (chosen by what stays exact on smp U-Nets, measured with torch 2.14):

* onnx: ``torch.onnx.export(dynamo=True)``, the torch.export-based exporter (torch's default since 2.9;
  the TorchScript-based ``dynamo=False`` one is deprecated). Every exporter freezes PadToMultiple's
  Python decisions (pad or not, which mirror mode) at the example's size, so an exported U-Net would
  silently return wrong logits for an H or W that needs other padding. For ``dynamic=true`` the inner
  network is therefore exported behind :class:`AlwaysPad`, which always mirror-pads to the stride with
  symbolic sizes: any batch and any H, W >= the stride, exact.
* torchscript: ``torch.jit.script`` (it keeps the padding logic, so any size works), else
  ``torch.jit.trace`` at ``input_size`` (for networks that cannot be scripted, and for ``dynamic=false``):
  a traced network replays the padding of ``input_size``, so only that H x W is guaranteed.

Parity: the written file is loaded back (onnxruntime CPU / ``torch.jit.load``) and run beside the
PyTorch network on the same seeded random input: 1 x C x H x W at ``input_size`` and, when dynamic, a
batch of 2 at the next larger multiple of the stride and 1 image at a size off the stride. A dynamic
export that fails or is not within ``tolerance`` falls back to a fixed-size one (logged as a warning,
``dynamic: false`` in the JSON); a fixed-size export not within tolerance is an error. Files are written
through a temporary file renamed on success, so a failed export leaves nothing behind.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import hydra
import numpy as np
import torch
import torch.nn.functional as F
from omegaconf import DictConfig, ListConfig, OmegaConf
from torch import nn

from cellseg import __version__
from cellseg.cli import exit_on_bad_input, run_command
from cellseg.config import config_dir
from cellseg.errors import CellsegError, ConfigError, OutputDirError, RunExistsError
from cellseg.inference.checkpoint import load_model, read_checkpoint
from cellseg.models.padding import PadToMultiple, input_multiple
from cellseg.utils.io import atomic_path, write_json_atomic

log = logging.getLogger(__name__)

FORMATS = ("onnx", "torchscript")
SUFFIXES = {"onnx": ".onnx", "torchscript": ".torchscript.pt"}
#: Name of the metadata JSON inside the file (a TorchScript extra file, an ONNX metadata_props key).
METADATA_KEY = "cellseg.json"
ONNX_PACKAGES = ("onnx", "onnxscript", "onnxruntime")
ONNX_INPUT, ONNX_OUTPUT = "image", "logits"
DEFAULT_INPUT_SIZE = 256
JIT_DEPRECATED = r".*`torch\.jit\.\w+` is deprecated"

Shape = tuple[int, int, int, int]
Runner = Callable[[torch.Tensor], np.ndarray]


class ExportError(CellsegError, RuntimeError):
    """The exporter could not convert the network, or the exported file computes other logits."""


@dataclass(frozen=True)
class ExportSettings:
    """The checked options of one export."""

    ckpt: Path
    format: str
    output: Path
    input_size: tuple[int, int]
    dynamic: bool
    overwrite: bool
    tolerance: float
    opset: int | None

    @property
    def sidecar(self) -> Path:
        """The JSON report written next to the exported file."""
        return self.output.with_name(self.output.name + ".json")


@dataclass(frozen=True)
class Attempt:
    """One way of exporting: shape-dynamic (checked at several sizes) or fixed to ``input_size``."""

    dynamic: bool
    shapes: tuple[Shape, ...]


# ---------------------------------------------------------------- checks (all before any export work)


def _check_format(value: Any) -> str:
    if value not in FORMATS:
        raise ConfigError(f"format is '{value}'; expected one of {', '.join(FORMATS)}.")
    return str(value)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _check_input_size(value: Any, crop_size: Any) -> tuple[int, int]:
    """``[H, W]``; null means the checkpoint's training crop size, else DEFAULT_INPUT_SIZE."""
    if value is None:
        side = int(crop_size) if _is_int(crop_size) and crop_size > 0 else DEFAULT_INPUT_SIZE
        return side, side
    items = list(value) if isinstance(value, (list, tuple, ListConfig)) else None
    if items is None or len(items) != 2 or not all(_is_int(v) and v > 0 for v in items):
        shown = OmegaConf.to_container(value) if isinstance(value, ListConfig) else value
        raise ConfigError(
            f"input_size is {shown!r}; expected [H, W], two positive integers (e.g. input_size=[256,256]), "
            "or null for the checkpoint's crop size."
        )
    return int(items[0]), int(items[1])


def _check_options(cfg: DictConfig) -> None:
    for key in ("dynamic", "overwrite"):
        if not isinstance(cfg[key], bool):
            raise ConfigError(f"{key} is {cfg[key]!r}; expected true or false.")
    tolerance = cfg.tolerance
    if isinstance(tolerance, bool) or not isinstance(tolerance, (int, float)) or not tolerance > 0:
        raise ConfigError(f"tolerance is {tolerance!r}; expected a positive number such as 1e-4.")
    if cfg.opset is not None and not (_is_int(cfg.opset) and cfg.opset > 0):
        raise ConfigError(f"opset is {cfg.opset!r}; expected an ONNX opset number (e.g. 18) or null.")


def check_onnx_installed() -> None:
    """format=onnx needs the exporter (onnx, onnxscript) and onnxruntime for the parity check."""
    missing = [name for name in ONNX_PACKAGES if importlib.util.find_spec(name) is None]
    if missing:
        raise ConfigError(
            f"format=onnx needs {', '.join(missing)}, which is not installed; install it with "
            'pip install "cellseg[onnx]" (or use format=torchscript).'
        )


def default_output(ckpt: Path, fmt: str) -> Path:
    """``<ckpt stem>.onnx`` / ``<ckpt stem>.torchscript.pt`` next to the checkpoint."""
    return ckpt.with_name(ckpt.stem + SUFFIXES[fmt])


def _resolve_output(value: Any, ckpt: Path, fmt: str) -> Path:
    """The file to write; an existing folder means "in there, named after the checkpoint"."""
    if value is None:
        return default_output(ckpt, fmt)
    path = Path(str(value)).expanduser().absolute()
    return path / default_output(ckpt, fmt).name if path.is_dir() else path


def _check_output(settings: ExportSettings) -> None:
    """Refuse to replace the checkpoint, or existing files without overwrite; the folder must be writable."""
    if settings.output.resolve() == settings.ckpt.resolve():
        raise ConfigError(f"output '{settings.output}' is the checkpoint itself; choose another file.")
    for path in (settings.output, settings.sidecar):
        if path.exists() and not settings.overwrite:
            raise RunExistsError(
                f"output '{path}' already exists; pass overwrite=true to replace it, or output=<file>."
            )
        if path.is_dir():
            raise OutputDirError(f"output '{path}' is a folder; cannot write the export there.")
    existing = next(p for p in settings.output.parents if p.exists())
    if not existing.is_dir() or not os.access(existing, os.W_OK | os.X_OK):
        raise OutputDirError(
            f"Cannot write '{settings.output}': '{existing}' is not a writable folder; choose output=<file>."
        )


def _check_options_first(cfg: DictConfig) -> None:
    """The checks that need no file: format, option values, the ONNX packages, a checkpoint given."""
    _check_format(cfg.format)
    _check_options(cfg)
    if cfg.format == "onnx":
        check_onnx_installed()
    if cfg.ckpt is None or not str(cfg.ckpt).strip():
        raise ConfigError(
            "ckpt is empty; pass the checkpoint to export, e.g. ckpt=<run>/checkpoints/best.ckpt."
        )


def _settings(cfg: DictConfig, crop_size: Any) -> ExportSettings:
    """The options resolved with the checkpoint's crop size (output path, input size); output checked."""
    fmt = str(cfg.format)
    ckpt = Path(str(cfg.ckpt)).expanduser().absolute()
    settings = ExportSettings(
        ckpt=ckpt,
        format=fmt,
        output=_resolve_output(cfg.output, ckpt, fmt),
        input_size=_check_input_size(cfg.input_size, crop_size),
        dynamic=bool(cfg.dynamic),
        overwrite=bool(cfg.overwrite),
        tolerance=float(cfg.tolerance),
        opset=None if cfg.opset is None else int(cfg.opset),
    )
    _check_output(settings)
    return settings


def check_settings(cfg: DictConfig) -> ExportSettings:
    """Every option and file checked (checkpoint readable, output free) before anything is exported."""
    _check_options_first(cfg)
    checkpoint = read_checkpoint(str(cfg.ckpt))
    return _settings(cfg, (checkpoint["hyper_parameters"].get("pipeline") or {}).get("crop_size"))


# ---------------------------------------------------------------- what gets exported


class AlwaysPad(nn.Module):
    """PadToMultiple's padding without Python branches, so torch.export keeps H and W symbolic.

    PadToMultiple skips padding when the input already fits and picks the mirror mode by size; both are
    Python decisions an exporter freezes at the example's size. Here the (possibly zero) reflect padding
    is always applied and cropped off again, which is the same computation for every H, W >=
    ``min_side`` = max(stride, PadToMultiple's min_size); the parity check confirms it per model.
    """

    def __init__(self, wrapped: PadToMultiple) -> None:
        super().__init__()
        self.net = wrapped.net
        self.multiple = int(wrapped.multiple)
        self.min_side = max(self.multiple, int(wrapped.min_size))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        height, width = x.shape[-2], x.shape[-1]
        pad_h, pad_w = (-height) % self.multiple, (-width) % self.multiple
        top, left = pad_h // 2, pad_w // 2
        padded = F.pad(x, (left, pad_w - left, top, pad_h - top), mode="reflect")
        return self.net(padded)[..., top : top + height, left : left + width]


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


def _parity_input(shape: Shape, seed: int) -> torch.Tensor:
    """The same pseudo-random image for every run (normalised inputs are roughly standard normal)."""
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float32)


def build_metadata(model: Any, settings: ExportSettings, dynamic: bool) -> dict[str, Any]:
    """What a consumer of the file needs to feed it images and read its output.

    The exporters add ``exporter`` (and ONNX its ``opset``) before storing it in the file.
    """
    multiple = input_multiple(model.net)
    metadata: dict[str, Any] = {
        "class_names": list(model.class_names),
        "channel_names": list(model.channel_names),
        "in_channels": model.in_channels,
        "pipeline": model.pipeline,
        "model": model.hparams.get("model"),
        "input_size": list(settings.input_size),
        "dynamic": dynamic,
        "input_multiple": multiple,
        "output": "logits (B, K, H, W), K = len(class_names)",
        "format": settings.format,
        "cellseg_version": __version__,
    }
    if dynamic and isinstance(model.net, PadToMultiple) and settings.format == "onnx":
        metadata["min_side"] = AlwaysPad(model.net).min_side
    if settings.format == "onnx":
        metadata.update(input_name=ONNX_INPUT, output_name=ONNX_OUTPUT)
    return metadata


def _metadata_json(metadata: dict[str, Any]) -> str:
    return json.dumps(metadata, default=str)


@contextmanager
def _quiet(*loggers: str) -> Iterator[None]:
    """Keep the exporter's chatter off the console (optimizer passes, shape solver tracebacks).

    What matters reaches the user anyway: an export error, or the parity check's verdict.
    """
    levels = {name: logging.getLogger(name).level for name in loggers}
    for name in loggers:
        logging.getLogger(name).setLevel(logging.ERROR)
    try:
        yield
    finally:
        for name, level in levels.items():
            logging.getLogger(name).setLevel(level)


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return f"{type(error).__name__}: {text.splitlines()[0] if text else ''}"


# ---------------------------------------------------------------- TorchScript


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
                    f"torch.jit.script cannot compile this network ({_first_line(error)})"
                ) from error
        warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
        try:
            with torch.no_grad():
                return torch.jit.trace(net, example, check_trace=False), "torch.jit.trace"
        except Exception as error:  # the tracer's errors come in many types; all mean "cannot"
            raise ExportError(f"torch.jit.trace failed ({_first_line(error)})") from error


def export_torchscript(
    net: nn.Module, example: torch.Tensor, path: Path, dynamic: bool, metadata: dict[str, Any]
) -> dict[str, Any]:
    """Write the network to ``path`` with ``cellseg.json`` as an extra file; returns that metadata."""
    module, method = _to_torchscript(net, example, dynamic)
    metadata = {**metadata, "exporter": method}
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=JIT_DEPRECATED)
        torch.jit.save(module, str(path), _extra_files={METADATA_KEY: _metadata_json(metadata)})
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


# ---------------------------------------------------------------- ONNX


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
            _quiet("onnxscript", "onnx_ir", "torch.fx.experimental.symbolic_shapes"),
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
        raise ExportError(f"{method} failed ({_first_line(error)})") from error
    proto = program.model_proto
    used = next((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), opset)
    if opset is not None and used != opset:  # the exporter converts below its own opset only where it can
        raise ConfigError(
            f"opset={opset}: the exporter produced opset {used} for this network and could not convert it; "
            f"use opset=null (its default) or opset>={used}."
        )
    metadata = {**metadata, "exporter": method, "opset": used}
    entry = proto.metadata_props.add()
    entry.key, entry.value = METADATA_KEY, _metadata_json(metadata)
    onnx.save_model(proto, str(path))
    return metadata


def onnx_runner(path: Path) -> Runner:
    import onnxruntime as ort

    try:
        options = ort.SessionOptions()
        options.log_severity_level = 4  # a failing shape is reported by the parity check, in one line
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except Exception as error:  # onnxruntime raises its own types for graphs it cannot run
        raise ExportError(f"onnxruntime cannot load the exported model ({_first_line(error)})") from error
    name = session.get_inputs()[0].name
    return lambda x: session.run(None, {name: x.numpy()})[0]


def read_onnx_metadata(path: str | Path) -> dict[str, Any]:
    """The ``cellseg.json`` stored in an exported ONNX file's metadata_props."""
    import onnx

    props = {p.key: p.value for p in onnx.load(str(path), load_external_data=False).metadata_props}
    return json.loads(props[METADATA_KEY])


# ---------------------------------------------------------------- parity and the export itself


def parity(net: nn.Module, run: Runner, shapes: Sequence[Shape]) -> list[dict[str, Any]]:
    """Max abs difference of the exported file's logits from the PyTorch network's, per input shape."""
    results = []
    for seed, shape in enumerate(shapes):
        x = _parity_input(shape, seed)
        with torch.no_grad():
            expected = net(x).numpy()
        try:
            got = run(x)
        except Exception as error:  # a runtime refusing the shape is a failed check
            results.append(
                {"shape": list(shape), "max_abs_diff": None, "error": f"an error ({_first_line(error)})"}
            )
            continue
        if got.shape != expected.shape:
            error = f"logits of shape {list(got.shape)} instead of {list(expected.shape)}"
            results.append({"shape": list(shape), "max_abs_diff": None, "error": error})
        else:
            results.append({"shape": list(shape), "max_abs_diff": float(np.abs(got - expected).max())})
    return results


def _failure(checks: Sequence[dict[str, Any]], tolerance: float) -> str | None:
    """Why the parity checks fail (the first failing shape), or None when all are within tolerance."""
    for check in checks:
        shape = "x".join(map(str, check["shape"]))
        if check["max_abs_diff"] is None:
            return f"at input {shape} the exported model gives {check['error']}"
        if not check["max_abs_diff"] <= tolerance:
            return f"at input {shape} the max abs logit difference is {check['max_abs_diff']:.2e} > tolerance {tolerance:g}"
    return None


def _attempts(settings: ExportSettings, channels: int, multiple: int) -> list[Attempt]:
    fixed = Attempt(False, parity_shapes(channels, settings.input_size, multiple, False))
    if not settings.dynamic:
        return [fixed]
    return [Attempt(True, parity_shapes(channels, settings.input_size, multiple, True)), fixed]


def _export_checked(model: Any, settings: ExportSettings, tmp: Path) -> dict[str, Any]:
    """Export into ``tmp`` (dynamic first when asked), check parity; the report of the export kept."""
    net = model.net.float().eval()
    example = _parity_input(parity_shapes(model.in_channels, settings.input_size, 1, False)[0], 0)
    fallback_reason = None
    for attempt in _attempts(settings, model.in_channels, input_multiple(net)):
        wanted = build_metadata(model, settings, attempt.dynamic)
        try:
            if settings.format == "onnx":
                metadata = export_onnx(net, example, tmp, attempt.dynamic, wanted, settings.opset)
                run = onnx_runner(tmp)
            else:
                metadata = export_torchscript(net, example, tmp, attempt.dynamic, wanted)
                run = torchscript_runner(tmp)
        except ExportError as error:
            if not attempt.dynamic:
                raise ExportError(f"{settings.ckpt}: {settings.format} export failed: {error}.") from error
            fallback_reason = str(error)
            log.warning(
                "Dynamic %s export not possible (%s); exporting a fixed-size one.", settings.format, error
            )
            continue
        checks = parity(net, run, attempt.shapes)
        failure = _failure(checks, settings.tolerance)
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


def export(cfg: DictConfig) -> dict[str, Any]:
    """Check the options, export the checkpoint's network, verify parity; returns the report written."""
    started = time.perf_counter()
    _check_options_first(cfg)
    model = load_model(str(cfg.ckpt), device="cpu")  # reads the (large) checkpoint file only once
    settings = _settings(cfg, model.pipeline.get("crop_size"))
    log.info(
        "Exporting %s as %s (input %s, dynamic=%s)",
        settings.ckpt,
        settings.format,
        list(settings.input_size),
        settings.dynamic,
    )
    with atomic_path(settings.output) as tmp:
        result = _export_checked(model, settings, tmp)
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


def check_before_start(job: DictConfig) -> None:
    """All option, checkpoint and output checks, before Hydra starts (it writes nothing for export)."""
    check_settings(job)


@hydra.main(version_base="1.3", config_path=str(config_dir()), config_name="export")
def _hydra_main(cfg: DictConfig) -> None:
    exit_on_bad_input(export)(cfg)


def main() -> None:
    run_command("export", _hydra_main, job_checks=(check_before_start,))


if __name__ == "__main__":
    main()
