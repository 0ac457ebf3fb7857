"""The transformation explorer (seed 001's ``transformation_helper``): each chosen sample whole, then as
``copies`` training epochs draw it (channel draws, random crop, augmentation), the mask's cell outlines on
every copy, so what training sees (and whether image and mask still agree) is checked by eye.

Copy ``k`` is epoch ``k`` of a training run with the same ``seed``: the data set draws sample ``i`` of
epoch ``e`` from (seed, e, i) alone. Every copy of a sample shares the grey scale of the whole sample (its
1st-99.8th percentiles), so brightness and contrast augmentation stays visible instead of being
stretched away; outlines are those of :func:`cellseg.instances.overlay.outline_overlay`.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from matplotlib.figure import Figure

from cellseg.data.sources.base import SegmentationDataModule
from cellseg.instances.overlay import PERCENTILES, outline_overlay
from cellseg.visualisation.figures import image_axes, panel_figure, show_image
from cellseg.visualisation.samples import pick_images, training_sample, training_view, whole_view


def display_range(image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-plane (low, high) of a (C, H, W) image: its percentiles, as outline overlays stretch them."""
    low, high = np.percentile(image.reshape(image.shape[0], -1), PERCENTILES, axis=1)
    return low, np.where(high > low, high, low + 1.0)


def grey(image: np.ndarray, low: np.ndarray, high: np.ndarray) -> np.ndarray:
    """(H, W) in [0, 1]: the mean of the planes, each mapped from its (low, high) to 0..1."""
    planes = (image - low[:, None, None]) / (high - low)[:, None, None]
    return np.clip(planes, 0.0, 1.0).mean(axis=0)


def with_outlines(grey_image: np.ndarray, instances: np.ndarray) -> np.ndarray:
    """(H, W, 3) uint8: the grey image with every cell's outline in its overlay colour.

    The outlines are :func:`outline_overlay` of a black image (nothing but the coloured outlines),
    laid over this grey image, whose scale is the sample's rather than each copy's own.
    """
    labels = np.maximum(np.asarray(instances), 0).astype(np.int64)  # unannotated (-1) shows no outline
    outlines = outline_overlay(np.zeros(labels.shape, np.float32), labels)
    rgb = np.repeat(np.round(grey_image * 255).astype(np.uint8)[:, :, None], 3, axis=2)
    drawn = outlines.any(axis=2)
    rgb[drawn] = outlines[drawn]
    return rgb


def augment_figure(
    datamodule: SegmentationDataModule,
    split: str = "train",
    samples: int = 3,
    copies: int = 5,
    seed: int = 42,
    indices: Sequence[int] | None = None,
    panel: int = 200,
    title: str = "augmentation",
) -> Figure:
    """Rows of samples: the whole image, then ``copies`` epochs of it as training draws them."""
    drawn = training_view(datamodule, split, seed)
    whole = whole_view(datamodule, split)
    chosen = pick_images(len(whole.samples), samples, indices, seed)
    figure = panel_figure(len(chosen), copies + 1, panel, f"{title}: {split} images, seed {seed}")
    axes = image_axes(figure, len(chosen), copies + 1)
    for row, index in enumerate(chosen):
        item = whole[index]
        image = item["image"].numpy()
        low, high = display_range(image)
        name = whole.samples.names[index]
        size = "x".join(map(str, image.shape[1:]))
        show_image(
            axes[row, 0],
            with_outlines(grey(image, low, high), item["instances"].numpy()),
            f"{name}\nwhole, {size}",
        )
        for epoch in range(copies):
            drawn.set_epoch(epoch)
            copy = training_sample(drawn, index)
            picture = with_outlines(grey(copy["image"].numpy(), low, high), copy["instances"].numpy())
            show_image(
                axes[row, epoch + 1], picture, f"epoch {epoch}\n{'x'.join(map(str, copy['image'].shape[1:]))}"
            )
    return figure
