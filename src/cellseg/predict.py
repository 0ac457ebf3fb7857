"""``python -m cellseg.predict``: a trained checkpoint on new images of any size, written as masks,
probabilities and instance labels.

    python -m cellseg.predict ckpt=outputs/train/<run>/checkpoints/best.ckpt input=images/ output=results/

The checkpoint alone says how to read the images (channels, normalisation) and what the classes are.
Images are predicted tile by tile (``tile.*``), so their size is not limited by GPU or CPU memory.
Results go to ``output/masks``, ``output/probabilities`` and ``output/instances``, one file per input
file (a stack in, a multi-page TIFF out), with ``predict.json`` listing what was written and how.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import hydra
import numpy as np
from omegaconf import DictConfig, OmegaConf
from tqdm import tqdm

from cellseg import __version__
from cellseg.cli import exit_on_bad_input, run_command
from cellseg.config import config_dir
from cellseg.data.io import image_stem, read_planes
from cellseg.errors import ConfigError, DataError
from cellseg.inference.checkpoint import read_checkpoint
from cellseg.inference.decode import (
    class_map,
    encode_mask,
    foreground_probability,
    instance_labels,
    mask_values,
)
from cellseg.inference.inputs import check_inputs, expand_inputs, split_planes
from cellseg.inference.predictor import Predictor
from cellseg.inference.tiling import TileSettings
from cellseg.inference.writers import (
    check_mask_format,
    check_output_folder,
    instance_dtype,
    write_masks,
    write_tiff,
)
from cellseg.utils.io import write_json_atomic

log = logging.getLogger(__name__)

SAVE_KINDS = ("mask", "probability", "instances")
PROBABILITY_MODES = ("foreground", "all")
FOLDERS = {"mask": "masks", "probability": "probabilities", "instances": "instances"}
#: What Hydra itself writes into the output folder before the task starts.
HYDRA_FILES = (".hydra", "predict.log")


@dataclass(frozen=True)
class OutputOptions:
    """What to write for each input file (``save``, ``mask.*``, ``probability``)."""

    save: tuple[str, ...]
    mask_format: str
    mask_values: tuple[int, ...]
    probability: str

    @classmethod
    def from_config(cls, cfg: DictConfig, class_names: Sequence[str]) -> OutputOptions:
        save = tuple(cfg.save) if not isinstance(cfg.save, str) else (cfg.save,)
        unknown = sorted(set(save) - set(SAVE_KINDS))
        if unknown or not save:
            raise ConfigError(f"save has {unknown or 'nothing'}; choose any of {', '.join(SAVE_KINDS)}.")
        if cfg.probability not in PROBABILITY_MODES:
            raise ConfigError(
                f"probability is '{cfg.probability}'; expected one of {', '.join(PROBABILITY_MODES)}."
            )
        values = mask_values(
            OmegaConf.to_container(cfg.mask["values"]) if cfg.mask["values"] else None, class_names
        )
        mask_format = check_mask_format(str(cfg.mask.format))
        return cls(save, mask_format, tuple(values), str(cfg.probability))


def unique_stems(files: Sequence[Path]) -> list[str]:
    """Output names of the inputs; two inputs that would write the same files are an error."""
    stems = [image_stem(p) for p in files]
    seen: dict[str, Path] = {}
    for stem, path in zip(stems, files, strict=True):
        if stem in seen:
            raise DataError(
                f"inputs '{seen[stem]}' and '{path}' would both be written as '{stem}'; predict them into "
                "different output folders or rename one."
            )
        seen[stem] = path
    return stems


@dataclass
class ImageResult:
    """What is kept of one image's prediction: its class map and the probability map to save."""

    classes: np.ndarray
    probability: np.ndarray | None

    @classmethod
    def of(cls, probabilities: np.ndarray, options: OutputOptions) -> ImageResult:
        """Drops the (K, H, W) probabilities right away: a stack holds only what will be written."""
        kept = None
        if "probability" in options.save:
            kept = (
                foreground_probability(probabilities)
                if options.probability == "foreground"
                else probabilities
            )
        return cls(class_map(probabilities), kept)


def write_results(
    output: Path,
    stem: str,
    results: Sequence[ImageResult],
    class_names: Sequence[str],
    options: OutputOptions,
) -> dict[str, str]:
    """Masks, probability maps and instance labels of one input file's images; returns the paths."""
    written: dict[str, str] = {}
    if "mask" in options.save:
        masks = [encode_mask(r.classes, options.mask_values) for r in results]
        written["mask"] = str(write_masks(output / FOLDERS["mask"] / stem, masks, options.mask_format))
    if "probability" in options.save:
        maps = [r.probability for r in results]
        names = ["foreground"] if options.probability == "foreground" else list(class_names)
        path = output / FOLDERS["probability"] / f"{stem}.tif"
        pages = np.stack(maps) if len(maps) > 1 else maps[0]
        written["probability"] = str(write_tiff(path, pages, f"classes: {', '.join(names)}"))
    if "instances" in options.save:
        labels = [instance_labels(r.classes, class_names) for r in results]
        labels = [lab.astype(instance_dtype(labels)) for lab in labels]
        path = output / FOLDERS["instances"] / f"{stem}.tif"
        written["instances"] = str(write_tiff(path, labels if len(labels) > 1 else labels[0]))
    return written


def _tile_bar(progress: bool, total: int, passes: int) -> tqdm:
    return tqdm(
        total=total,
        desc=f"tiles (x{passes} TTA)" if passes > 1 else "tiles",
        unit="tile",
        leave=False,
        disable=not progress,
        position=1,
    )


def predict_files(
    predictor: Predictor,
    files: Sequence[Path],
    output: Path,
    options: OutputOptions,
    pages: str = "auto",
    progress: bool = True,
) -> list[dict[str, Any]]:
    """Predict every image of every file and write its results; returns one manifest entry per file."""
    counts = check_inputs(files, len(predictor.channel_names), pages)
    stems = unique_stems(files)
    entries = []
    with tqdm(
        total=sum(c[0] for c in counts), desc="images", unit="image", disable=not progress, position=0
    ) as bar:
        for path, stem in zip(files, stems, strict=True):
            started = time.perf_counter()
            images = split_planes(read_planes(path), len(predictor.channel_names), pages, path)
            results = []
            for image in images:
                height, width = image.shape[-2:]
                with _tile_bar(progress, predictor.tiles_for(height, width), predictor.passes) as tiles:
                    results.append(ImageResult.of(predictor.probabilities(image, tiles.update), options))
                bar.update(1)
            written = write_results(output, stem, results, predictor.class_names, options)
            entries.append(
                {
                    "input": str(path),
                    "images": len(images),
                    "height": int(images[0].shape[-2]),
                    "width": int(images[0].shape[-1]),
                    "outputs": written,
                    "seconds": round(time.perf_counter() - started, 3),
                }
            )
    return entries


def _settings(cfg: DictConfig) -> dict[str, Any]:
    keys = ("channel_names", "pages", "save", "mask", "probability", "tile", "tta", "device", "amp")
    resolved = OmegaConf.to_container(cfg, resolve=True)
    return {k: resolved[k] for k in keys}


def predict(cfg: DictConfig) -> dict[str, Any]:
    """Check everything (checkpoint, inputs, output folder), then predict; returns the manifest written."""
    started = time.perf_counter()
    tiles = TileSettings(**OmegaConf.to_container(cfg.tile, resolve=True))
    names = OmegaConf.to_container(cfg.channel_names) if cfg.channel_names else None
    predictor = Predictor.from_checkpoint(
        cfg.ckpt, tiles=tiles, tta=cfg.tta, device=cfg.device, amp=cfg.amp, channel_names=names
    )
    options = OutputOptions.from_config(cfg, predictor.class_names)
    files = expand_inputs(
        OmegaConf.to_container(cfg.input) if OmegaConf.is_list(cfg.input) else str(cfg.input)
    )
    output = check_output_folder(cfg.output, cfg.overwrite, ignore=HYDRA_FILES)
    log.info(
        "Predicting %d file(s) with %s on %s (tiles %d px, overlap %.2f, %s blending, TTA %s)",
        len(files),
        predictor.model.path,
        predictor.device,
        tiles.size,
        tiles.overlap,
        tiles.blend,
        cfg.tta,
    )
    entries = predict_files(predictor, files, output, options, cfg.pages, cfg.progress)
    manifest = {
        "checkpoint": str(predictor.model.path),
        "class_names": list(predictor.class_names),
        "channel_names": list(predictor.channel_names),
        "mask_values": list(options.mask_values),
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
    """The checks that need no model: a cellseg checkpoint, existing inputs, a free output folder."""
    read_checkpoint(job.ckpt)
    expand_inputs(OmegaConf.to_container(job.input) if OmegaConf.is_list(job.input) else str(job.input))
    check_output_folder(job.output, job.overwrite)


@hydra.main(version_base="1.3", config_path=str(config_dir()), config_name="predict")
def _hydra_main(cfg: DictConfig) -> None:
    exit_on_bad_input(predict)(cfg)


def main() -> None:
    run_command("predict", _hydra_main, job_checks=(check_before_start,))


if __name__ == "__main__":
    main()
