"""A TensorBoard image grid per validation epoch: input composite, target, prediction and errors."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pytorch_lightning as pl
import torch
from pytorch_lightning.loggers import TensorBoardLogger
from torchvision.utils import make_grid

from cellseg.data.pipeline.weight_maps import weight_map_to_image
from cellseg.errors import ConfigError

# Class colours for up to 8 classes: background black, then distinct hues.
_PALETTE = torch.tensor(
    [[0, 0, 0], [1, 1, 1], [0.9, 0.6, 0], [0.35, 0.7, 0.9], [0, 0.6, 0.5], [0.95, 0.9, 0.25],
     [0, 0.45, 0.7], [0.8, 0.4, 0]],
    dtype=torch.float32,
)  # fmt: skip
_FALSE_POSITIVE = torch.tensor([1.0, 0.2, 0.2])  # red: predicted foreground where the target is background
_FALSE_NEGATIVE = torch.tensor([0.2, 0.5, 1.0])  # blue: missed foreground
_WRONG_CLASS = torch.tensor([1.0, 0.0, 1.0])  # magenta: foreground of the wrong class


def composite(image: torch.Tensor) -> torch.Tensor:
    """A displayable RGB (3, H, W) in [0, 1] from the first three input channels (grey if one channel)."""
    planes = image[:3].float()
    low = planes.flatten(1).quantile(0.01, dim=1)[:, None, None]
    high = planes.flatten(1).quantile(0.995, dim=1)[:, None, None]
    planes = ((planes - low) / (high - low).clamp_min(1e-6)).clamp(0, 1)
    if planes.shape[0] == 1:
        return planes.expand(3, -1, -1)
    if planes.shape[0] == 2:
        return torch.cat([planes, torch.zeros_like(planes[:1])])
    return planes


def colorize(classes: torch.Tensor) -> torch.Tensor:
    """RGB (3, H, W) of a class map (H, W); unknown or ignored labels are grey."""
    palette = torch.cat([_PALETTE, torch.full((1, 3), 0.5)])
    index = classes.long().clamp(-1, len(_PALETTE) - 1)
    index = torch.where(index < 0, len(_PALETTE), index)
    return palette[index].permute(2, 0, 1)


def error_map(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """RGB (3, H, W): black where right, red false positive, blue false negative, magenta wrong class."""
    rgb = torch.zeros(3, *pred.shape)
    wrong = pred != target
    kinds = (
        (wrong & (target == 0), _FALSE_POSITIVE),
        (wrong & (pred == 0), _FALSE_NEGATIVE),
        (wrong & (pred != 0) & (target > 0), _WRONG_CLASS),
    )
    for where, colour in kinds:
        rgb[:, where] = colour[:, None]
    return rgb


class ValidationImageGrid(pl.Callback):
    """Logs the first ``num_images`` validation samples as rows of (input, target, prediction, errors),
    plus the loss's weight map when the batch carries one."""

    def __init__(self, num_images: int = 4, tag: str = "val/examples") -> None:
        if num_images < 1:
            raise ConfigError(f"callbacks.image_grid.num_images must be >= 1, got {num_images}.")
        self.num_images = num_images
        self.tag = tag

    def on_validation_batch_end(
        self,
        trainer: pl.Trainer,
        pl_module: pl.LightningModule,
        outputs: Mapping[str, Any] | None,
        batch: Mapping[str, torch.Tensor],
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        if batch_idx != 0 or dataloader_idx != 0 or trainer.sanity_checking or not trainer.is_global_zero:
            return
        loggers = [lg for lg in trainer.loggers if isinstance(lg, TensorBoardLogger)]
        if not loggers or not outputs or "preds" not in outputs:
            return
        tiles = []
        count = min(self.num_images, batch["image"].shape[0])
        for i in range(count):
            image, target = batch["image"][i].detach().cpu(), batch["mask"][i].detach().cpu()
            pred = outputs["preds"][i].detach().cpu()
            tiles += [composite(image), colorize(target), colorize(pred), error_map(pred, target)]
            if "weight_map" in batch:  # the loss's per-pixel weights (U-Net border map), brighter = heavier
                weights = weight_map_to_image(batch["weight_map"][i].detach().cpu().float().numpy())
                tiles.append(torch.from_numpy(weights).expand(3, -1, -1))
        panels = 5 if "weight_map" in batch else 4
        grid = make_grid(torch.stack(tiles), nrow=panels, padding=2, pad_value=0.3)
        for logger in loggers:
            logger.experiment.add_image(self.tag, grid, global_step=trainer.global_step)
