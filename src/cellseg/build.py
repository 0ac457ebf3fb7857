"""Turning a composed training config into objects: data module, LightningModule, callbacks, loggers.

The loss is built once, here: the data module learns from it which per-pixel weight map the label
pipeline must add to each batch, and the LightningModule receives it ready-made.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import pytorch_lightning as pl
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from pytorch_lightning.callbacks import ProgressBar
from torch import nn

from cellseg.config import check_required_values
from cellseg.data.pipeline.targets import Target
from cellseg.data.pipeline.weight_maps import UNetWeightMap
from cellseg.data.sources.base import SegmentationDataModule
from cellseg.errors import ConfigError
from cellseg.losses import build_loss, trains_regression, weight_map_settings
from cellseg.module import SegmentationModule
from cellseg.sweep_resume import OPTUNA_SWEEPER

log = logging.getLogger(__name__)


def plain(node: Any) -> Any:
    """A resolved plain-Python copy of a config node (what checkpoints store)."""
    if isinstance(node, DictConfig) or OmegaConf.is_list(node):
        return OmegaConf.to_container(node, resolve=True)
    return node


def _parts(cfg: DictConfig) -> tuple[Target, nn.Module]:
    """The target (it sizes everything by its classes) and the loss, built once from it."""
    check_required_values(cfg)
    target = instantiate(cfg.target, _convert_="all")
    criterion = build_loss(plain(cfg.loss), target.num_classes, target.ignore_index)
    check_loss_fits_target(target, criterion)
    return target, criterion


def check_loss_fits_target(target: Target, criterion: nn.Module) -> None:
    """A target with regression outputs needs a regression term in its loss, and only such a target has one."""
    outputs = target.outputs
    if outputs.has_regression and not trains_regression(criterion):
        raise ConfigError(
            f"The target learns {', '.join(outputs.regression_names)} as well as its classes, but the loss "
            "has no regression term for them; use loss=distance or loss=flows (or add an mse or "
            "smooth_l1 term to loss.terms)."
        )
    if trains_regression(criterion) and not outputs.has_regression:
        raise ConfigError(
            f"The loss has a regression term (mse or smooth_l1) but {type(target).__name__} outputs classes "
            "only; regression terms belong to target=distance and target=flows."
        )


#: Where ``augmentation`` runs: in the loader workers (albumentations) or on the batch on its device.
AUGMENTATION_DEVICES = ("cpu", "gpu")


def _clipping_steps(pipeline: Any) -> list[str]:
    """The steps of an albumentations pipeline that clip float images to [0, 1] when they fire."""
    import albumentations as A

    found = []
    for step in getattr(pipeline, "transforms", []):
        if isinstance(step, A.RandomBrightnessContrast) and step.p > 0:
            found.append(type(step).__name__)
        found.extend(_clipping_steps(step))
    return found


def check_augmentation_keeps_intensities(pipeline: Any, normalization: Any) -> None:
    """albumentations' brightness/contrast clips float images to [0, 1]: with a normalisation whose values
    reach outside it (``meanstd``, or ``clip: false``) every augmented image would lose its negative and
    bright intensities, silently. Refused before any data is read."""
    settings = dict(normalization or {})
    method, clip = settings.get("method", "percentile"), settings.get("clip", True)
    if method != "meanstd" and clip:
        return
    steps = _clipping_steps(pipeline)
    if steps:
        raise ConfigError(
            f"augmentation has {', '.join(sorted(set(steps)))}, which clips float images to [0, 1], but "
            f"data.normalization (method={method}, clip={clip}) gives values outside [0, 1]: half of the "
            "training images would lose every intensity below 0 and above 1. Use "
            "data.normalization.method=percentile or minmax with clip=true, or an augmentation without "
            "brightness/contrast (augmentation=elastic or none, or fastai with p_lighting=0)."
        )


def build_augmentation(
    node: DictConfig | None, target: Target, normalization: Any = None
) -> Callable[..., dict] | None:
    """The ``augmentation`` group: albumentations, per sample in the loader workers (``device: cpu``), or
    the same transforms as a :class:`~cellseg.data.pipeline.batch_augment.BatchAugmentation` that the
    LightningModule applies to each training batch on its device (``device: gpu``). Checked here, before
    any data is read: the device, kornia's presence and that every transform has a batch version."""
    if not node:
        return None
    settings = OmegaConf.to_container(node, resolve=True)
    device = settings.pop("device", "cpu")
    if device not in AUGMENTATION_DEVICES:
        raise ConfigError(f"augmentation.device={device}: expected one of {', '.join(AUGMENTATION_DEVICES)}.")
    pipeline = instantiate(settings)
    check_augmentation_keeps_intensities(pipeline, normalization)
    if device == "cpu":
        return pipeline
    from cellseg.data.pipeline.batch_augment import BatchAugmentation

    return BatchAugmentation.from_albumentations(pipeline, target.regression_names)


def _datamodule(cfg: DictConfig, target: Target, criterion: nn.Module) -> SegmentationDataModule:
    """``data`` with its ``channels``, ``target`` and ``augmentation``, and the weight map the loss reads."""
    settings = weight_map_settings(criterion)
    # Built objects are passed to the partial, not to instantiate(): Hydra would turn dataclasses
    # such as ChannelStrategy back into configs.
    make_datamodule = instantiate(cfg.data, _partial_=True, _convert_="partial")
    return make_datamodule(
        channels=instantiate(cfg.channels, _convert_="all"),
        target=target,
        augmentation=build_augmentation(
            cfg.get("augmentation"), target, OmegaConf.to_container(cfg.data.get("normalization") or {})
        ),
        weight_map=UNetWeightMap(**settings) if settings is not None else None,
    )


def build_datamodule(cfg: DictConfig) -> SegmentationDataModule:
    """The data module alone, batches as training sees them (to inspect or score data)."""
    return _datamodule(cfg, *_parts(cfg))


def build_training(cfg: DictConfig) -> tuple[SegmentationDataModule, SegmentationModule]:
    """The data module and the LightningModule sized by it: ``in_channels`` from the channels, the
    classes from the target; both share the one loss."""
    target, criterion = _parts(cfg)
    datamodule = _datamodule(cfg, target, criterion)
    augmentation = datamodule.augmentation  # augmentation.device=gpu: the training step applies it
    module = SegmentationModule(
        model=plain(cfg.model),
        loss=plain(cfg.loss),
        optimizer=plain(cfg.optimizer),
        scheduler=plain(cfg.scheduler) or None,
        in_channels=datamodule.in_channels,
        class_names=list(datamodule.class_names),
        regression_names=list(target.regression_names),
        ignore_index=target.ignore_index,
        # The data config too, so python -m cellseg.evaluate can find the same data set again.
        pipeline={**datamodule.describe(), "data": plain(cfg.data)},
        eval_metrics=list(datamodule.eval_metrics),
        criterion=criterion,
        compile=bool(cfg.get("compile", False)),
        batch_augment=augmentation if getattr(augmentation, "on_batch", False) else None,
    )
    return datamodule, module


def resolve_precision(precision: Any) -> Any:
    """``trainer.precision``, with ``mixed``: bf16-mixed where the GPU computes bf16 (Ampere and newer:
    fp16's range without its loss scaling), else 16-mixed."""
    if precision != "mixed":
        return precision
    import torch

    return "bf16-mixed" if torch.cuda.is_available() and torch.cuda.is_bf16_supported() else "16-mixed"


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


def _optuna_trial() -> bool:
    """Whether this job runs a trial of ``hydra/sweeper=optuna``."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    if not HydraConfig.initialized() or HydraConfig.get().mode != RunMode.MULTIRUN:
        return False
    return HydraConfig.get().sweeper.get("_target_") == OPTUNA_SWEEPER


def build_trial_pruning(cfg: DictConfig) -> list[pl.Callback]:
    """In a trial of ``hydra/sweeper=optuna``, the search's pruner through Lightning (after the callbacks
    that record each epoch, so that the epoch that stops a trial is recorded too); for a single-process
    job only (under DDP every rank would have to agree to stop: such a trial runs to its end)."""
    if not _optuna_trial():
        return []
    if "ddp" in str(cfg.trainer.get("strategy")):
        log.warning("Optuna pruning is off for this trial: it trains with %s.", cfg.trainer.strategy)
        return []
    from cellseg.callbacks.pruning import trial_pruning

    pruning = trial_pruning(cfg.monitor)
    return [pruning] if pruning is not None else []


def build_loggers(cfg: DictConfig) -> list[Any]:
    return _instantiate_each(cfg.get("logger"), "logger")
