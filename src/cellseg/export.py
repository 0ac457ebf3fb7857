"""``python -m cellseg.export``: a trained checkpoint as one standalone ONNX or TorchScript file, kept only
if it computes the same logits as the PyTorch network, or as a BioImage Model Zoo package.

    python -m cellseg.export ckpt=outputs/train/<run>/checkpoints/best.ckpt format=onnx
    python -m cellseg.export ckpt=<run>/checkpoints/best.ckpt format=torchscript input_size=[512,512]
    python -m cellseg.export ckpt=<run>/checkpoints/best.ckpt format=bioimageio bioimageio.sample=img.tif

The file goes next to the checkpoint (``best.onnx``, ``best.torchscript.pt``) unless ``output`` names
another, with ``<output>.json`` beside it (parity figures, shapes, metadata). The exported network takes
a float32 batch ``(B, C, H, W)``, normalised as the checkpoint's pipeline says, and returns logits
``(B, K, H, W)``. Class names, channel names and the pipeline travel inside the file as ``cellseg.json``
(TorchScript ``_extra_files``, ONNX ``metadata_props``), so a consumer needs nothing else.
``format=bioimageio`` writes ``best.bioimageio.zip`` for Fiji, ilastik, QuPath and napari
(:mod:`cellseg.exporters.bioimageio`), written only when the model zoo's own model test passes.

How each format is made and checked: :mod:`cellseg.exporters`.
"""

from __future__ import annotations

import logging
from typing import Any

import hydra
from omegaconf import DictConfig

from cellseg.cli import exit_on_bad_input, run_command
from cellseg.config import config_dir
from cellseg.exporters import (
    check_options,
    check_settings,
    export_model,
    package_options,
    resolve_settings,
)
from cellseg.inference.checkpoint import load_model

log = logging.getLogger(__name__)


def export(cfg: DictConfig) -> dict[str, Any]:
    """Check the options, export the checkpoint's network, verify parity; returns the report written."""
    check_options(cfg)
    model = load_model(str(cfg.ckpt), device="cpu")  # reads the (large) checkpoint file only once
    settings = resolve_settings(cfg, model.pipeline.get("crop_size"))
    if settings.format == "bioimageio":
        from cellseg.exporters.bioimageio import export_bioimageio  # imports the spec only when asked

        return export_bioimageio(model, settings, package_options(cfg))
    return export_model(model, settings)


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
