"""Turning the composed config into objects: data module, LightningModule, callbacks, loggers."""

from __future__ import annotations

from typing import Any

import pytorch_lightning as pl
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from pytorch_lightning.callbacks import ProgressBar

from cellseg.config import check_required_values
from cellseg.data.datamodule import SegmentationDataModule
from cellseg.errors import ConfigError
from cellseg.losses import weight_map_from_loss_config
from cellseg.module import SegmentationModule


def plain(node: Any) -> Any:
    """A resolved plain-Python copy of a config node (what checkpoints store)."""
    if isinstance(node, DictConfig) or OmegaConf.is_list(node):
        return OmegaConf.to_container(node, resolve=True)
    return node


def build_datamodule(cfg: DictConfig) -> SegmentationDataModule:
    """``data`` with its ``channels``, ``target`` and ``augmentation`` groups plugged in."""
    # Built objects are passed to the partial, not to instantiate(): Hydra would turn dataclasses
    # such as ChannelStrategy back into configs.
    check_required_values(cfg)
    make_datamodule = instantiate(cfg.data, _partial_=True, _convert_="partial")
    target = instantiate(cfg.target, _convert_="all")
    return make_datamodule(
        channels=instantiate(cfg.channels, _convert_="all"),
        target=target,
        augmentation=instantiate(cfg.augmentation) if cfg.get("augmentation") else None,
        weight_map=weight_map_from_loss_config(plain(cfg.loss), target.num_classes),  # what the loss reads
    )


def build_module(cfg: DictConfig, datamodule: SegmentationDataModule) -> SegmentationModule:
    """The LightningModule, sized by the data: ``in_channels`` from channels, classes from the target."""
    return SegmentationModule(
        model=plain(cfg.model),
        loss=plain(cfg.loss),
        optimizer=plain(cfg.optimizer),
        scheduler=plain(cfg.scheduler) or None,
        in_channels=datamodule.in_channels,
        class_names=list(datamodule.class_names),
        ignore_index=datamodule.target.ignore_index,
        # The data config too, so python -m cellseg.evaluate can find the same data set again.
        pipeline={**datamodule.describe(), "data": plain(cfg.data)},
        eval_metrics=list(datamodule.eval_metrics),
    )


def _instantiate_each(group: DictConfig | None, kind: str) -> list[Any]:
    objects = []
    for name, node in (group or {}).items():
        if node is None:
            continue  # an entry switched off from the command line, e.g. callbacks.early_stopping=null
        if not isinstance(node, DictConfig) or "_target_" not in node:
            raise ConfigError(f"{kind}.{name} must be a config with a _target_, got {node!r}.")
        objects.append(instantiate(node))
    return objects


def build_callbacks(cfg: DictConfig) -> list[pl.Callback]:
    """The ``callbacks`` group; a progress bar is left out when ``trainer.enable_progress_bar=false``."""
    callbacks = _instantiate_each(cfg.get("callbacks"), "callbacks")
    if not cfg.trainer.get("enable_progress_bar", True):
        callbacks = [c for c in callbacks if not isinstance(c, ProgressBar)]
    return callbacks


def build_loggers(cfg: DictConfig) -> list[Any]:
    return _instantiate_each(cfg.get("logger"), "logger")
