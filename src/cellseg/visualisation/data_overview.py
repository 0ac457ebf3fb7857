"""A data set at a glance: a few samples of each split with their labels, the model input's intensity
histograms per channel, the pixel share of each class and the number of cells per image.

Samples are shown whole, as validation sees them (no random draws, no augmentation): the input with
its cells' outlines (:func:`~cellseg.instances.overlay.outline_overlay`) above its class map in the
colours of the training image grid (:func:`~cellseg.callbacks.image_grid.colorize`). The statistics are
of the model input (after channels and normalisation), over at most ``limit`` images of each split,
evenly spaced; histograms use a random sample of each image's pixels.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field

import numpy as np
import torch
from matplotlib.figure import Figure

from cellseg.callbacks.image_grid import colorize
from cellseg.data.pipeline.dataset import SegmentationDataset
from cellseg.data.sources.base import SegmentationDataModule
from cellseg.instances.overlay import outline_overlay
from cellseg.visualisation.figures import panel_figure, show_image
from cellseg.visualisation.samples import input_names, pick_images, whole_view

log = logging.getLogger(__name__)

SPLITS = ("train", "val", "test")
#: Histogram bins, pixels sampled per image for them, and the least number of columns of the figure.
BINS, PIXELS_PER_IMAGE, MIN_COLUMNS = 64, 4096, 3


@dataclass
class SplitStats:
    """What the statistics panels show of one split."""

    split: str
    images: int
    values: list[list[np.ndarray]] = field(default_factory=list)  # per channel, pixel samples per image
    class_pixels: np.ndarray | None = None  # (K,) pixels of each class
    ignored: int = 0  # pixels without a label (ignore_index)
    cells: list[int] = field(default_factory=list)  # per image


def measure_split(
    dataset: SegmentationDataset, split: str, num_classes: int, limit: int | None, seed: int
) -> SplitStats:
    """Pixel samples, class pixel counts and cells per image of at most ``limit`` images of a split."""
    count = len(dataset.samples)
    chosen = (
        range(count)
        if limit is None or limit >= count
        else np.unique(np.linspace(0, count - 1, limit).round())
    )
    rng = np.random.default_rng(seed)
    stats = SplitStats(split, len(chosen), class_pixels=np.zeros(num_classes, np.int64))
    for index in chosen:
        item = dataset[int(index)]
        image = item["image"].numpy().reshape(item["image"].shape[0], -1)
        picked = rng.choice(image.shape[1], size=min(PIXELS_PER_IMAGE, image.shape[1]), replace=False)
        if not stats.values:
            stats.values = [[] for _ in range(image.shape[0])]
        for channel, plane in enumerate(image):
            stats.values[channel].append(plane[picked])
        mask = item["mask"].numpy()
        labelled = mask[(mask >= 0) & (mask < num_classes)]
        stats.class_pixels += np.bincount(labelled, minlength=num_classes)[:num_classes]
        stats.ignored += int(mask.size - labelled.size)
        stats.cells.append(int(np.unique(item["instances"].numpy()).clip(0).astype(bool).sum()))
    return stats


def _class_colours(num_classes: int) -> np.ndarray:
    """(K, 3) RGB in [0, 1] of each class, as the label maps show them."""
    return colorize(torch.arange(num_classes)[None, :]).numpy()[:, 0, :].T


def _samples(
    figure: Figure, grid, row: int, dataset: SegmentationDataset, split: str, chosen: list[int]
) -> None:
    for col, index in enumerate(chosen):
        item = dataset[index]
        instances = np.maximum(item["instances"].numpy(), 0)
        name = dataset.samples.names[index]
        show_image(
            figure.add_subplot(grid[row, col]),
            outline_overlay(item["image"].numpy(), instances),
            f"{split}: {name}",
        )
        classes = colorize(item["mask"]).permute(1, 2, 0).numpy()
        show_image(figure.add_subplot(grid[row + 1, col]), classes, f"{split}: classes")


def _histograms(
    figure: Figure, grid, first_row: int, cols: int, names: list[str], stats: list[SplitStats]
) -> None:
    for channel, name in enumerate(names):
        ax = figure.add_subplot(grid[first_row + channel // cols, channel % cols])
        values = [np.concatenate(s.values[channel]) for s in stats]
        joined = np.concatenate(values)
        low, high = float(joined.min()), float(joined.max())
        edges = np.linspace(low, high if high > low else low + 1.0, BINS + 1)
        ax.hist(values, bins=edges, histtype="step", density=True, log=True, label=[s.split for s in stats])
        ax.set_title(f"input '{name}'", fontsize=8)
        ax.tick_params(labelsize=6)
        if channel == 0:
            ax.legend(fontsize=6)


def _class_balance(ax, stats: list[SplitStats], class_names: tuple[str, ...]) -> None:
    colours = _class_colours(len(class_names))
    bottom = np.zeros(len(stats))
    for k, name in enumerate(class_names):
        shares = np.array([s.class_pixels[k] / max(s.class_pixels.sum(), 1) for s in stats])
        bars = ax.bar(
            [s.split for s in stats], shares, bottom=bottom, color=colours[k], edgecolor="grey", label=name
        )
        ax.bar_label(
            bars,
            labels=[f"{v:.1%}" if v >= 0.04 else "" for v in shares],
            label_type="center",
            fontsize=6,
            color="tab:orange",
        )
        bottom += shares
    ax.set_ylim(0, 1)
    ax.set_title("class balance (pixel share)", fontsize=8)
    ax.tick_params(labelsize=6)
    ax.legend(fontsize=6, loc="upper left", bbox_to_anchor=(1.0, 1.0))


def _cell_counts(ax, stats: list[SplitStats]) -> None:
    ax.boxplot(
        [s.cells for s in stats],
        tick_labels=[f"{s.split}\n{s.images} img\n{sum(s.cells)} cells" for s in stats],  # narrow panels
    )
    ax.set_title("cells per image", fontsize=8)
    ax.tick_params(labelsize=6)


def data_figure(
    datamodule: SegmentationDataModule,
    samples: int = 3,
    seed: int = 42,
    limit: int | None = 200,
    panel: int = 200,
    title: str = "data",
) -> Figure:
    """Samples and labels of every split the data set has, then histograms, class balance, cell counts."""
    splits = [s for s in SPLITS if datamodule.has_split(s)]
    datasets = {split: whole_view(datamodule, split) for split in splits}
    names = input_names(datamodule.channels.describe())
    cols = max(samples, MIN_COLUMNS)
    hist_rows = math.ceil(len(names) / cols)
    rows = 2 * len(splits) + hist_rows + 1
    figure = panel_figure(rows, cols, panel, title)
    grid = figure.add_gridspec(rows, cols)
    stats = []
    for number, split in enumerate(splits):
        dataset = datasets[split]
        _samples(
            figure, grid, 2 * number, dataset, split, pick_images(len(dataset.samples), samples, None, seed)
        )
        stats.append(measure_split(dataset, split, datamodule.num_classes, limit, seed))
        log.info(
            "%s: %d image(s) measured, %d cells (%.1f per image), class pixels %s, unlabelled %d",
            split, stats[-1].images, sum(stats[-1].cells), float(np.mean(stats[-1].cells)),
            dict(zip(datamodule.class_names, stats[-1].class_pixels.tolist(), strict=True)), stats[-1].ignored,
        )  # fmt: skip
    _histograms(figure, grid, 2 * len(splits), cols, names, stats)
    balance, counts = grid[rows - 1, :].subgridspec(1, 2)
    _class_balance(figure.add_subplot(balance), stats, datamodule.class_names)
    _cell_counts(figure.add_subplot(counts), stats)
    return figure
