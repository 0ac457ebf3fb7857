"""One image's prediction kept and written: class map, probability map and instance labels per input file.

Shared by ``python -m cellseg.predict`` (files in, files out) and ``python -m cellseg.evaluate
save_predictions=true`` (a split's images).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from cellseg.data.io import image_stem, read_planes
from cellseg.errors import ConfigError, DataError
from cellseg.inference.decode import class_map, encode_mask, foreground_probability, mask_values
from cellseg.inference.inputs import check_inputs, split_planes
from cellseg.inference.predictor import Predictor
from cellseg.inference.writers import check_mask_format, instance_dtype, write_masks, write_png, write_tiff
from cellseg.instances.measure import image_names, measure_cells, summarise, write_measurements, write_summary
from cellseg.instances.overlay import outline_overlay
from cellseg.outputs import OutputLayout

SAVE_KINDS = ("mask", "probability", "instances")
PROBABILITY_MODES = ("foreground", "all")
FOLDERS = {
    "mask": "masks",
    "probability": "probabilities",
    "instances": "instances",
    "measurements": "measurements",
    "overlays": "overlays",
}
#: Cell count and areas of every image measured (``measure=true``), in the output folder.
SUMMARY_FILE = "summary.csv"


@dataclass(frozen=True)
class OutputOptions:
    """What to write for each input file (``save``, ``mask.*``, ``probability``)."""

    save: tuple[str, ...]
    mask_format: str
    mask_values: tuple[int, ...]
    probability: str
    measure: bool = False
    pixel_size: float | None = None

    @property
    def needs_instances(self) -> bool:
        return "instances" in self.save or self.measure

    @classmethod
    def checked(
        cls,
        save: str | Sequence[str],
        mask_format: str,
        values: Sequence[int] | None,
        probability: str,
        class_names: Sequence[str],
        measure: bool = False,
        pixel_size: float | None = None,
    ) -> OutputOptions:
        """The options of predict's ``save``, ``mask.format``, ``mask.values``, ``probability``, ``measure``
        and ``pixel_size`` keys."""
        kinds = (save,) if isinstance(save, str) else tuple(save)
        unknown = sorted(set(kinds) - set(SAVE_KINDS))
        if unknown or not kinds:
            raise ConfigError(f"save has {unknown or 'nothing'}; choose any of {', '.join(SAVE_KINDS)}.")
        if probability not in PROBABILITY_MODES:
            raise ConfigError(
                f"probability is '{probability}'; expected one of {', '.join(PROBABILITY_MODES)}."
            )
        resolved = mask_values(list(values) if values else None, class_names)
        check_pixel_size(pixel_size)
        return cls(
            kinds,
            check_mask_format(str(mask_format)),
            tuple(resolved),
            str(probability),
            bool(measure),
            float(pixel_size) if pixel_size is not None else None,
        )


def check_pixel_size(pixel_size: float | None) -> None:
    """``pixel_size`` (micrometres per pixel) is a number > 0, or null for measurements in pixels only."""
    if pixel_size is not None and (
        isinstance(pixel_size, bool) or not isinstance(pixel_size, (int, float)) or not pixel_size > 0
    ):
        raise ConfigError(
            f"pixel_size must be a number > 0 (micrometres per pixel) or null, got {pixel_size!r}."
        )


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


#: One image's class probabilities (K, H, W) and regression maps (R, H, W) or None -> instance ids (H, W).
Decoder = Callable[[np.ndarray, np.ndarray | None], np.ndarray]


@dataclass
class ImageResult:
    """What is kept of one image's prediction: its class map, the probability map to save and, when
    they are wanted, its instance labels (decoded by the target: components, watershed, flows)."""

    classes: np.ndarray
    probability: np.ndarray | None
    instances: np.ndarray | None = None

    @classmethod
    def of(
        cls, outputs: np.ndarray, options: OutputOptions, layout: OutputLayout, decode: Decoder
    ) -> ImageResult:
        """Drops the (K + R, H, W) outputs right away: a stack holds only what will be written."""
        probabilities, regression = layout.split_array(outputs)
        kept = None
        if "probability" in options.save:
            kept = (
                foreground_probability(probabilities)
                if options.probability == "foreground"
                else probabilities
            )
        instances = decode(probabilities, regression) if options.needs_instances else None
        return cls(class_map(probabilities), kept, instances)


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
        labels = [r.instances for r in results if r.instances is not None]
        labels = [lab.astype(instance_dtype(labels)) for lab in labels]
        path = output / FOLDERS["instances"] / f"{stem}.tif"
        written["instances"] = str(write_tiff(path, labels if len(labels) > 1 else labels[0]))
    return written


def write_measurements_of(
    output: Path,
    stem: str,
    images: Sequence[np.ndarray],
    results: Sequence[ImageResult],
    channel_names: Sequence[str],
    pixel_size: float | None,
) -> tuple[dict[str, str], list[dict[str, Any]]]:
    """``measurements/<stem>.csv`` (a row per cell) and ``overlays/<image>.png`` (cell outlines on the
    image) of one input file; returns the paths written and the file's summary rows (one per image)."""
    names = image_names(stem, len(images))
    tables, summary = [], []
    for name, image, result in zip(names, images, results, strict=True):
        assert result.instances is not None
        table = measure_cells(result.instances, image, channel_names, pixel_size)
        tables.append((name, table))
        summary.append(summarise(name, table, pixel_size))
        write_png(output / FOLDERS["overlays"] / f"{name}.png", outline_overlay(image, result.instances))
    path = write_measurements(output / FOLDERS["measurements"] / f"{stem}.csv", tables)
    return {"measurements": str(path), "overlays": str(output / FOLDERS["overlays"])}, summary


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
    decode: Decoder | None = None,
) -> list[dict[str, Any]]:
    """Predict every image of every file and write its results; returns one manifest entry per file.

    ``decode`` makes instance labels (default: the checkpoint's target with its decoding settings)."""
    counts = check_inputs(files, len(predictor.channel_names), pages)
    summary: list[dict[str, Any]] = []
    stems = unique_stems(files)
    decode = decode or predictor.model.target.decode
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
                    outputs = predictor.outputs(image, tiles.update)
                results.append(ImageResult.of(outputs, options, predictor.layout, decode))
                bar.update(1)
            written = write_results(output, stem, results, predictor.class_names, options)
            if options.measure:
                paths, rows = write_measurements_of(
                    output, stem, images, results, predictor.channel_names, options.pixel_size
                )
                written.update(paths)
                summary.extend(rows)
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
    if options.measure:
        write_summary(output / SUMMARY_FILE, summary)
    return entries
