"""One image's prediction kept and written: class map, probability map and instance labels per input file.

Shared by ``python -m cellseg.predict`` (files in, files out) and ``python -m cellseg.evaluate
save_predictions=true`` (a split's images).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from cellseg.data.io import image_stem, read_planes
from cellseg.errors import ConfigError, DataError
from cellseg.inference.decode import (
    class_map,
    encode_mask,
    foreground_probability,
    instance_labels,
    mask_values,
)
from cellseg.inference.inputs import check_inputs, split_planes
from cellseg.inference.predictor import Predictor
from cellseg.inference.writers import check_mask_format, instance_dtype, write_masks, write_tiff

SAVE_KINDS = ("mask", "probability", "instances")
PROBABILITY_MODES = ("foreground", "all")
FOLDERS = {"mask": "masks", "probability": "probabilities", "instances": "instances"}


@dataclass(frozen=True)
class OutputOptions:
    """What to write for each input file (``save``, ``mask.*``, ``probability``)."""

    save: tuple[str, ...]
    mask_format: str
    mask_values: tuple[int, ...]
    probability: str

    @classmethod
    def checked(
        cls,
        save: str | Sequence[str],
        mask_format: str,
        values: Sequence[int] | None,
        probability: str,
        class_names: Sequence[str],
    ) -> OutputOptions:
        """The options of predict's ``save``, ``mask.format``, ``mask.values`` and ``probability`` keys."""
        kinds = (save,) if isinstance(save, str) else tuple(save)
        unknown = sorted(set(kinds) - set(SAVE_KINDS))
        if unknown or not kinds:
            raise ConfigError(f"save has {unknown or 'nothing'}; choose any of {', '.join(SAVE_KINDS)}.")
        if probability not in PROBABILITY_MODES:
            raise ConfigError(
                f"probability is '{probability}'; expected one of {', '.join(PROBABILITY_MODES)}."
            )
        resolved = mask_values(list(values) if values else None, class_names)
        return cls(kinds, check_mask_format(str(mask_format)), tuple(resolved), str(probability))


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
