"""The options of one export, each checked (with the checkpoint and the output location) before any work."""

from __future__ import annotations

import getpass
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from omegaconf import ListConfig, OmegaConf

from cellseg.errors import ConfigError, OutputDirError, RunExistsError
from cellseg.exporters.common import check_installed
from cellseg.exporters.onnx import check_onnx_installed
from cellseg.inference.checkpoint import read_checkpoint
from cellseg.runs import check_writable

FORMATS = ("onnx", "torchscript", "bioimageio")

SUFFIXES = {"onnx": ".onnx", "torchscript": ".torchscript.pt", "bioimageio": ".bioimageio.zip"}

DEFAULT_INPUT_SIZE = 256


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


def _check_options(cfg: Mapping[str, Any]) -> None:
    for key in ("dynamic", "overwrite"):
        if not isinstance(cfg[key], bool):
            raise ConfigError(f"{key} is {cfg[key]!r}; expected true or false.")
    tolerance = cfg.tolerance
    if isinstance(tolerance, bool) or not isinstance(tolerance, (int, float)) or not tolerance > 0:
        raise ConfigError(f"tolerance is {tolerance!r}; expected a positive number such as 1e-4.")
    if cfg.opset is not None and not (_is_int(cfg.opset) and cfg.opset > 0):
        raise ConfigError(f"opset is {cfg.opset!r}; expected an ONNX opset number (e.g. 18) or null.")


def default_output(ckpt: Path, fmt: str) -> Path:
    """``<ckpt stem>.onnx`` / ``.torchscript.pt`` / ``.bioimageio.zip`` next to the checkpoint."""
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
    check_writable(settings.output.parent, f"'{settings.output.name}' to", "Choose output=<file>.")


#: What format=bioimageio needs: the spec and its model test, and the ONNX exporter and runtime.
BIOIMAGEIO_PACKAGES = ("bioimageio.spec", "bioimageio.core", "onnx", "onnxscript", "onnxruntime")


def check_bioimageio_installed() -> None:
    check_installed("bioimageio", BIOIMAGEIO_PACKAGES, "bioimageio")


@dataclass(frozen=True)
class PackageOptions:
    """What rdf.yaml says about the model beyond the checkpoint (``bioimageio.*`` of the export config)."""

    name: str | None
    description: str | None
    authors: tuple[dict[str, str], ...]
    license: str
    tags: tuple[str, ...]
    sample: Path | None
    halo: int


def package_options(cfg: Mapping[str, Any]) -> PackageOptions:
    """The ``bioimageio`` options checked: authors as names or {name, affiliation, orcid}, a sample that
    exists, a halo >= 0."""
    options = cfg["bioimageio"]
    authors = options.get("authors")
    if authors is None:
        authors = [getpass.getuser()]
    if isinstance(authors, str) or not authors:
        raise ConfigError(
            f"bioimageio.authors is {authors!r}; expected a list of names or of {{name, affiliation, orcid}}."
        )
    parsed = []
    for author in authors:
        entry = {"name": author} if isinstance(author, str) else dict(author)
        if not str(entry.get("name") or "").strip():
            raise ConfigError(f"bioimageio.authors: {author!r} has no name.")
        parsed.append({k: str(v) for k, v in entry.items() if v is not None})
    sample = options.get("sample")
    if sample is not None and not Path(str(sample)).expanduser().is_file():
        raise ConfigError(
            f"bioimageio.sample '{sample}' is not a file; give an image the model was made for."
        )
    halo = options.get("halo")
    if isinstance(halo, bool) or not isinstance(halo, int) or halo < 0:
        raise ConfigError(f"bioimageio.halo is {halo!r}; expected a whole number of pixels >= 0.")
    return PackageOptions(
        name=options.get("name"),
        description=options.get("description"),
        authors=tuple(parsed),
        license=str(options.get("license")),
        tags=tuple(str(t) for t in options.get("tags") or ()),
        sample=None if sample is None else Path(str(sample)).expanduser(),
        halo=int(halo),
    )


def check_options(cfg: Mapping[str, Any]) -> None:
    """The checks that need no file: format, option values, the ONNX packages, a checkpoint given."""
    _check_format(cfg.format)
    _check_options(cfg)
    if cfg.format == "onnx":
        check_onnx_installed()
    if cfg.format == "bioimageio":
        check_bioimageio_installed()
        package_options(cfg)
    if cfg.ckpt is None or not str(cfg.ckpt).strip():
        raise ConfigError(
            "ckpt is empty; pass the checkpoint to export, e.g. ckpt=<run>/checkpoints/best.ckpt."
        )


def resolve_settings(cfg: Mapping[str, Any], crop_size: Any) -> ExportSettings:
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


def check_settings(cfg: Mapping[str, Any]) -> ExportSettings:
    """Every option and file checked (checkpoint readable, output free) before anything is exported."""
    check_options(cfg)
    checkpoint = read_checkpoint(str(cfg.ckpt))
    return resolve_settings(cfg, (checkpoint["hyper_parameters"].get("pipeline") or {}).get("crop_size"))
