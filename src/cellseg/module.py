"""The LightningModule: builds network and loss from plain config dicts, so a checkpoint is self-contained."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import pytorch_lightning as pl
import torch
from hydra.utils import instantiate
from pytorch_lightning.utilities import rank_zero_warn

from cellseg.data.pipeline.targets import Decoder
from cellseg.losses import build_loss
from cellseg.models import create_model
from cellseg.outputs import OutputLayout
from cellseg.stage_metrics import StageMetrics

# Keys of a scheduler config that are Lightning's, not the scheduler's constructor arguments.
_LIGHTNING_SCHEDULER_KEYS = ("interval", "frequency", "monitor")
_STAGES = ("train", "val", "test")
_KEYS = {"train": "fit", "val": "val", "test": "test"}


def _decoder(pipeline: Mapping[str, Any] | None, decoding: Mapping[str, Any] | None = None) -> Decoder | None:
    """The target's decoding of one image into instances, for the instance metrics of validation."""
    from cellseg.data.pipeline.targets import target_from_description

    description = (pipeline or {}).get("target")
    if not description:
        return None
    return target_from_description(description, decoding).decode


class SegmentationModule(pl.LightningModule):
    """Semantic segmentation with per-epoch Dice, IoU, pixel and per-class accuracy.

    Every constructor argument is a plain Python value (the resolved config), saved as hyperparameters;
    ``SegmentationModule.load_from_checkpoint(path)`` therefore rebuilds the exact network, loss and
    data pipeline description without the run directory or its config files.
    """

    def __init__(
        self,
        model: Mapping[str, Any],
        loss: Mapping[str, Any],
        optimizer: Mapping[str, Any],
        in_channels: int,
        class_names: Sequence[str],
        scheduler: Mapping[str, Any] | None = None,
        ignore_index: int = -100,
        pipeline: Mapping[str, Any] | None = None,
        eval_metrics: Sequence[str] = (),
        criterion: torch.nn.Module | None = None,
        regression_names: Sequence[str] = (),
        compile: bool = False,
        batch_augment: Callable[[Mapping[str, torch.Tensor]], dict[str, torch.Tensor]] | None = None,
    ) -> None:
        """``criterion`` is the loss already built from ``loss`` (training builds it once, see
        :mod:`cellseg.build`); without it (``load_from_checkpoint``) it is built from ``loss`` here.
        ``compile`` runs the network through ``torch.compile`` (eager again, with a warning, if it fails).
        ``batch_augment`` (``augmentation.device=gpu``) augments each training batch on its device, before
        the network sees it; validation, test and prediction batches never. Like ``criterion`` it is not
        a hyperparameter: a checkpoint needs no augmentation to predict."""
        super().__init__()
        # train.py logs a curated, flat set of hyperparameters instead of these.
        self.save_hyperparameters(logger=False, ignore=["criterion", "batch_augment"])
        self.batch_augment = batch_augment
        self.layout = OutputLayout.of(class_names, regression_names)
        self.class_names = self.layout.class_names
        num_classes = self.layout.num_classes
        self.net = create_model(in_channels=in_channels, classes=self.layout.num_channels, **dict(model))
        # Not a submodule (object.__setattr__): checkpoints keep the plain net.* weight names.
        object.__setattr__(self, "_compiled", torch.compile(self.net) if compile else None)
        self.criterion = criterion if criterion is not None else build_loss(loss, num_classes, ignore_index)
        decode = _decoder(pipeline) if self.layout.has_regression else None
        # "train" is an nn.Module method name, so the stages are keyed fit/val/test.
        self.stage_metrics = torch.nn.ModuleDict(
            {
                _KEYS[stage]: StageMetrics(
                    self.class_names, ignore_index, eval_metrics, training=stage == "train", decode=decode
                )
                for stage in _STAGES
            }
        )

    def set_decoding(self, settings: Mapping[str, Any]) -> None:
        """Decode instances with these settings from now on (tuned on validation); checkpoints saved
        afterwards record them as ``decoding``."""
        self.hparams["decoding"] = dict(settings)
        decode = _decoder(self.hparams.get("pipeline"), settings)
        for metrics in self.stage_metrics.values():
            metrics.decode = decode

    def setup(self, stage: str) -> None:
        """Store the pipeline as set up (statistics fitted on the training split, e.g. meanstd's)."""
        datamodule = getattr(self.trainer, "datamodule", None) if self._trainer is not None else None
        if datamodule is not None and hasattr(datamodule, "describe"):
            self.hparams["pipeline"] = {**(self.hparams.get("pipeline") or {}), **datamodule.describe()}

    def _metrics(self, stage: str) -> StageMetrics:
        return self.stage_metrics[_KEYS[stage]]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self._compiled is not None:
            try:
                return self._compiled(x)
            except Exception as error:  # torch.compile fails lazily, on a first call, in many types
                rank_zero_warn(
                    f"compile=true: torch.compile failed ({type(error).__name__}: "
                    f"{str(error).strip().splitlines()[0] if str(error).strip() else ''}); "
                    "running the network without it."
                )
                object.__setattr__(self, "_compiled", None)
        return self.net(x)

    def _step(self, batch: Mapping[str, torch.Tensor], stage: str) -> dict[str, torch.Tensor]:
        logits, regression = self.layout.split(self(batch["image"]))
        if regression is not None:  # the regression terms of the loss read it from the batch
            batch = {**batch, "regression_output": regression}
        loss = self.criterion(logits, batch)
        preds = logits.argmax(dim=1)
        self._metrics(stage).update(logits, preds, batch, loss, regression)
        return {"loss": loss, "preds": preds}

    def training_step(self, batch: Mapping[str, torch.Tensor], batch_idx: int) -> dict[str, torch.Tensor]:
        if self.batch_augment is not None:
            batch = self.batch_augment(batch)
        out = self._step(batch, "train")
        self.log("train/loss_step", out["loss"].detach(), on_step=True, on_epoch=False, prog_bar=True)
        for name, value in (getattr(self.criterion, "last_terms", None) or {}).items():
            self.log(
                f"train/loss_{name}", value, on_step=False, on_epoch=True
            )  # the terms of a composite loss
        return out

    def validation_step(self, batch: Mapping[str, torch.Tensor], batch_idx: int) -> dict[str, torch.Tensor]:
        return self._step(batch, "val")

    def test_step(self, batch: Mapping[str, torch.Tensor], batch_idx: int) -> dict[str, torch.Tensor]:
        return self._step(batch, "test")

    def _log_epoch(self, stage: str) -> None:
        scores = {f"{stage}/{name}": value for name, value in self._metrics(stage).compute().items()}
        # The metric objects already summed their state over all ranks: no further sync is needed.
        self.log(f"{stage}/dice", scores.pop(f"{stage}/dice"), prog_bar=True)
        self.log_dict(scores)
        self._metrics(stage).reset()

    def on_train_epoch_end(self) -> None:
        self._log_epoch("train")

    def on_validation_epoch_end(self) -> None:
        if not self.trainer.sanity_checking:
            self._log_epoch("val")
        else:
            self._metrics("val").reset()

    def on_test_epoch_end(self) -> None:
        self._log_epoch("test")

    def configure_optimizers(self) -> Any:
        optimizer = instantiate(dict(self.hparams.optimizer))(params=self.parameters())
        scheduler_cfg = dict(self.hparams.scheduler or {})
        if not scheduler_cfg:
            return optimizer
        lightning_keys = {k: scheduler_cfg.pop(k) for k in _LIGHTNING_SCHEDULER_KEYS if k in scheduler_cfg}
        scheduler_factory = instantiate(scheduler_cfg)
        if (
            "total_steps" in inspect.signature(scheduler_factory.func).parameters
            and "total_steps" not in scheduler_cfg
        ):
            scheduler = scheduler_factory(optimizer, total_steps=int(self.trainer.estimated_stepping_batches))
        else:
            scheduler = scheduler_factory(optimizer)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, **lightning_keys}}
