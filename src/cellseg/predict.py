"""``python -m cellseg.predict``: a trained checkpoint on new images of any size, written as masks,
probabilities and instance labels.

    python -m cellseg.predict ckpt=outputs/train/<run>/checkpoints/best.ckpt input=images/ output=results/

The checkpoint alone says how to read the images (channels, normalisation) and what the classes are.
Images are predicted tile by tile (``tile.*``), so their size is not limited by GPU or CPU memory.
Results go to ``output/masks``, ``output/probabilities`` and ``output/instances``, one file per input
file (a stack in, a multi-page TIFF out), with ``predict.json`` listing what was written and how.
``measure=true`` adds ``output/measurements/<file>.csv`` (a row per cell: area, perimeter, centroid,
shape, intensities per channel; in micrometres too with ``pixel_size``), ``output/summary.csv`` (cell
count and areas per image) and ``output/overlays/<image>.png`` (each cell's outline on the image).
``postprocess=crf`` refines each image's class probabilities with a dense CRF (``crf.*``; the optional
``crf`` extra) before masks and instances are made.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import hydra
from omegaconf import DictConfig, OmegaConf

from cellseg import __version__
from cellseg.cli import exit_on_bad_input, run_command
from cellseg.config import config_dir
from cellseg.evaluation import check_decoding_request, decoding_overrides
from cellseg.inference.checkpoint import read_checkpoint
from cellseg.inference.inputs import expand_inputs
from cellseg.inference.predictor import Predictor
from cellseg.inference.results import OutputOptions, check_pixel_size, predict_files
from cellseg.inference.sources import check_sample_pixels
from cellseg.inference.tiling import TileSettings
from cellseg.inference.writers import check_output_folder
from cellseg.postprocess import postprocess_request
from cellseg.utils.io import write_json_atomic

log = logging.getLogger(__name__)

#: What Hydra itself writes into the output folder before the task starts.
HYDRA_FILES = (".hydra", "predict.log")


def _list_or_str(node: Any) -> list[Any] | str:
    """A list option given as a list or as one value (``input=a.tif`` or ``input=[a.tif,b.tif]``)."""
    return OmegaConf.to_container(node) if OmegaConf.is_list(node) else str(node)


def _settings(cfg: DictConfig) -> dict[str, Any]:
    keys = (
        "channel_names",
        "pages",
        "save",
        "mask",
        "probability",
        "measure",
        "pixel_size",
        "tile",
        "normalization_pixels",
        "tta",
        "postprocess",
        "crf",
        "device",
        "amp",
    )
    resolved = OmegaConf.to_container(cfg, resolve=True)
    return {k: resolved[k] for k in keys}


def predict(cfg: DictConfig) -> dict[str, Any]:
    """Check everything (checkpoint, inputs, output folder), then predict; returns the manifest written."""
    started = time.perf_counter()
    tiles = TileSettings(**OmegaConf.to_container(cfg.tile, resolve=True))
    names = OmegaConf.to_container(cfg.channel_names) if cfg.channel_names else None
    predictor = Predictor.from_checkpoint(
        cfg.ckpt,
        tiles=tiles,
        tta=cfg.tta,
        device=cfg.device,
        amp=cfg.amp,
        channel_names=names,
        postprocess=postprocess_request(cfg),
    )
    options = OutputOptions.checked(
        _list_or_str(cfg.save),
        str(cfg.mask.format),
        OmegaConf.to_container(cfg.mask["values"]) if cfg.mask["values"] else None,
        str(cfg.probability),
        predictor.class_names,
        measure=bool(cfg.measure),
        pixel_size=cfg.pixel_size,
    )
    target = predictor.model.target
    target.set_decoding({**target.decoding, **decoding_overrides(cfg)})
    files = expand_inputs(_list_or_str(cfg.input))
    output = check_output_folder(cfg.output, cfg.overwrite, ignore=HYDRA_FILES)
    log.info(
        "Predicting %d file(s) with %s on %s (tiles %d px, overlap %.2f, %s blending, TTA %s, %s)",
        len(files),
        predictor.model.path,
        predictor.device,
        tiles.size,
        tiles.overlap,
        tiles.blend,
        cfg.tta,
        f"postprocess {cfg.postprocess}",
    )
    entries = predict_files(
        predictor,
        files,
        output,
        options,
        cfg.pages,
        cfg.progress,
        target.decode,
        check_sample_pixels(cfg.normalization_pixels),
    )
    manifest = {
        "checkpoint": str(predictor.model.path),
        "class_names": list(predictor.class_names),
        "channel_names": list(predictor.channel_names),
        "mask_values": list(options.mask_values),
        "decoding": target.decoding,
        "settings": _settings(cfg),
        "device": str(predictor.device),
        "files": entries,
        "seconds": round(time.perf_counter() - started, 3),
        "cellseg_version": __version__,
    }
    write_json_atomic(output / "predict.json", manifest)
    log.info("Wrote results of %d file(s) to %s in %.1f s", len(entries), output, manifest["seconds"])
    return manifest


def check_before_start(job: DictConfig) -> None:
    """The checks that need no model: the post-processing (and its package), a cellseg checkpoint and its
    decoding settings, existing inputs, a pixel size, a free output folder."""
    postprocess_request(job)
    check_decoding_request(job, read_checkpoint(job.ckpt))
    expand_inputs(_list_or_str(job.input))
    check_pixel_size(job.pixel_size)
    check_sample_pixels(job.normalization_pixels)
    check_output_folder(job.output, job.overwrite)


@hydra.main(version_base="1.3", config_path=str(config_dir()), config_name="predict")
def _hydra_main(cfg: DictConfig) -> None:
    exit_on_bad_input(predict)(cfg)


def main() -> None:
    run_command("predict", _hydra_main, job_checks=(check_before_start,))


if __name__ == "__main__":
    main()
