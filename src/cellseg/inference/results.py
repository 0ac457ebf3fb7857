"""One image's prediction kept and written: class map, probability map and instance labels per input file.

Shared by ``python -m cellseg.predict`` (files in, files out) and ``python -m cellseg.evaluate
save_predictions=true`` (a split's images).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from cellseg.data.io import image_stem
from cellseg.errors import ConfigError, DataError
from cellseg.inference.decode import (
    Decoder,
    class_map,
    decoded_at_scale,
    encode_mask,
    foreground_probability,
    mask_values,
)
from cellseg.inference.inputs import check_inputs
from cellseg.inference.predictor import Predictor
from cellseg.inference.sources import DEFAULT_SAMPLE_PIXELS, SourceImage, source_images
from cellseg.inference.writers import StreamedTiff, check_mask_format, instance_dtype, write_png, write_tiff
from cellseg.instances.measure import image_names, measure_cells, summarise, write_measurements, write_summary
from cellseg.instances.overlay import outline_overlay
from cellseg.outputs import OutputLayout
from cellseg.utils.io import atomic_path

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


class FileResults:
    """The result files of one input file, filled image by image and block by block.

    Masks and probability maps are written block by block into TIFFs created up front, so an image's
    results never need to be held whole (a single image's PNG mask is the exception: PNG is encoded
    whole). Every file is written under a temporary name and renamed into place only when all of the
    file's images are complete; a failure leaves no partial file behind. Use as a context manager.
    """

    def __init__(
        self,
        output: Path,
        stem: str,
        options: OutputOptions,
        class_names: Sequence[str],
        images: int,
        height: int,
        width: int,
    ) -> None:
        self.output, self.stem, self.options = output, stem, options
        self.class_names = tuple(class_names)
        self.images, self.height, self.width = images, height, width
        self.instances: list[np.ndarray] = []
        self._stack = ExitStack()
        self._png_mask: np.ndarray | None = None
        self._mask: StreamedTiff | None = None
        self._probability: StreamedTiff | None = None
        self.written: dict[str, str] = {}

    def __enter__(self) -> FileResults:
        options, stack = self.options, self._stack.__enter__()
        page: tuple[int, ...] = (self.images,) if self.images > 1 else ()
        if "mask" in options.save:
            dtype = encode_mask(np.zeros(1, np.uint8), options.mask_values).dtype
            if options.mask_format == "png" and self.images == 1:
                self._png_mask = np.zeros((self.height, self.width), dtype)
            else:
                path = self.output / FOLDERS["mask"] / f"{self.stem}.tif"
                self._mask = StreamedTiff(
                    stack.enter_context(atomic_path(path)), (*page, self.height, self.width), dtype
                )
                self.written["mask"] = str(path)
        if "probability" in options.save:
            names = ["foreground"] if options.probability == "foreground" else list(self.class_names)
            classes: tuple[int, ...] = (len(names),) if options.probability == "all" else ()
            path = self.output / FOLDERS["probability"] / f"{self.stem}.tif"
            self._probability = StreamedTiff(
                stack.enter_context(atomic_path(path)),
                (*page, *classes, self.height, self.width),
                np.float32,
                f"classes: {', '.join(names)}",
            )
            self.written["probability"] = str(path)
        return self

    def add(self, image: int, rows: slice, cols: slice, probabilities: np.ndarray) -> None:
        """Class probabilities (K, h, w) of image ``image``'s ``rows`` x ``cols``: their mask and map."""
        page: tuple[int, ...] = (image,) if self.images > 1 else ()
        if self._png_mask is not None or self._mask is not None:
            mask = encode_mask(class_map(probabilities), self.options.mask_values)
            if self._png_mask is not None:
                self._png_mask[rows, cols] = mask
            else:
                self._mask.write((*page, rows, cols), mask)
        if self._probability is not None:
            if self.options.probability == "foreground":
                self._probability.write((*page, rows, cols), foreground_probability(probabilities))
            else:
                self._probability.write((*page, slice(None), rows, cols), probabilities)

    def add_outputs(self, image: int, outputs: np.ndarray, layout: OutputLayout, decode: Decoder) -> None:
        """A whole image's outputs (K + R, H, W): its mask and map, and its instances where wanted."""
        probabilities, regression = layout.split_array(outputs)
        self.add(image, slice(None), slice(None), probabilities)
        if self.options.needs_instances:
            self.instances.append(decode(probabilities, regression))

    def _write_whole_files(self) -> None:
        if self._png_mask is not None:
            path = self.output / FOLDERS["mask"] / f"{self.stem}.png"
            self.written["mask"] = str(write_png(path, self._png_mask))
        if "instances" in self.options.save:
            labels = [lab.astype(instance_dtype(self.instances)) for lab in self.instances]
            path = self.output / FOLDERS["instances"] / f"{self.stem}.tif"
            self.written["instances"] = str(write_tiff(path, labels if len(labels) > 1 else labels[0]))

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, trace: Any) -> None:
        if kind is None:
            try:
                self._write_whole_files()
            except BaseException as failure:  # the streamed files are dropped too
                self._stack.__exit__(type(failure), failure, failure.__traceback__)
                raise
        self._stack.__exit__(kind, error, trace)


def write_measurements_of(
    output: Path,
    stem: str,
    images: Sequence[np.ndarray],
    instances: Sequence[np.ndarray],
    channel_names: Sequence[str],
    pixel_size: float | None,
) -> tuple[dict[str, str], list[dict[str, Any]]]:
    """``measurements/<stem>.csv`` (a row per cell) and ``overlays/<image>.png`` (cell outlines on the
    image) of one input file; returns the paths written and the file's summary rows (one per image)."""
    names = image_names(stem, len(images))
    tables, summary = [], []
    for name, image, labels in zip(names, images, instances, strict=True):
        table = measure_cells(labels, image, channel_names, pixel_size)
        tables.append((name, table))
        summary.append(summarise(name, table, pixel_size))
        write_png(output / FOLDERS["overlays"] / f"{name}.png", outline_overlay(image, labels))
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


def predict_image(
    predictor: Predictor,
    source: SourceImage,
    index: int,
    results: FileResults,
    decode: Decoder,
    progress: bool,
) -> None:
    """One image's results into ``results``: streamed block by block, or, where instances, the CRF or
    a resize (the checkpoint's ``data.scale``) need the whole image, from its outputs held whole."""
    height, width = source.shape
    classes = predictor.layout.num_classes
    with _tile_bar(progress, predictor.tiles_for(height, width), predictor.passes) as tiles:
        if predictor.streams and not results.options.needs_instances and predictor.postprocess is None:
            for block in predictor.blocks(source, tiles.update):
                results.add(index, block.rows, block.cols, block.values[:classes])
            return
        outputs = predictor.outputs_of_source(source, tiles.update)
    results.add_outputs(index, outputs, predictor.layout, decode)


def predict_files(
    predictor: Predictor,
    files: Sequence[Path],
    output: Path,
    options: OutputOptions,
    pages: str = "auto",
    progress: bool = True,
    decode: Decoder | None = None,
    sample_pixels: int = DEFAULT_SAMPLE_PIXELS,
) -> list[dict[str, Any]]:
    """Predict every image of every file and write its results; returns one manifest entry per file.

    ``decode`` makes instance labels (default: the checkpoint's target with its decoding settings), at
    the checkpoint's training scale (:func:`~cellseg.inference.decode.decoded_at_scale`);
    ``sample_pixels`` bounds the pixels per channel that normalisation ranges are measured on."""
    counts = check_inputs(files, len(predictor.channel_names), pages)
    summary: list[dict[str, Any]] = []
    stems = unique_stems(files)
    decode = decoded_at_scale(decode or predictor.model.target.decode, predictor.scale)
    entries = []
    with tqdm(
        total=sum(c[0] for c in counts), desc="images", unit="image", disable=not progress, position=0
    ) as bar:
        for path, stem in zip(files, stems, strict=True):
            started = time.perf_counter()
            sources = source_images(path, predictor.inputs, pages)
            height, width = sources[0].shape
            with FileResults(
                output, stem, options, predictor.class_names, len(sources), height, width
            ) as results:
                for index, source in enumerate(sources):
                    predict_image(predictor, source.measure(sample_pixels), index, results, decode, progress)
                    bar.update(1)
            written = results.written
            if options.measure:
                images = [source.pixels() for source in sources]
                paths, rows = write_measurements_of(
                    output, stem, images, results.instances, predictor.channel_names, options.pixel_size
                )
                written.update(paths)
                summary.extend(rows)
            entries.append(
                {
                    "input": str(path),
                    "images": len(sources),
                    "height": int(height),
                    "width": int(width),
                    "outputs": written,
                    "seconds": round(time.perf_counter() - started, 3),
                }
            )
    if options.measure:
        write_summary(output / SUMMARY_FILE, summary)
    return entries
