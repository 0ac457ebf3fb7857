"""Decoding thresholds tuned on a run's validation images and stored in its checkpoint: the search behind
``python -m cellseg.evaluate tune=true`` and the :class:`TuneDecoding` callback that runs it when
training ends.

The callback makes a run's best checkpoint ready to predict with the thresholds that suit it; the test
stage that follows scores with them and ``metrics.json`` records them (``decoding``). Targets whose
instances come from the class map have nothing to tune: the callback does nothing for them.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytorch_lightning as pl
from pytorch_lightning.utilities import rank_zero_only

from cellseg.callbacks.run_summary import RunSummary
from cellseg.data.pipeline.targets import Target
from cellseg.data.sources.base import SegmentationDataModule
from cellseg.errors import ConfigError
from cellseg.evaluation import predict_split
from cellseg.inference.checkpoint import load_model
from cellseg.inference.predictor import Predictor
from cellseg.instances.tuning import TuningResult, store_decoding, tune_decoding

log = logging.getLogger(__name__)


def tune_on_validation(
    predictor: Predictor, datamodule: SegmentationDataModule, target: Target, progress: bool = True
) -> tuple[TuningResult, list[np.ndarray]]:
    """Decoding settings tuned for AP50 on the val split, and the split's outputs (reused when scoring)."""
    if not datamodule.has_split("val"):
        raise ConfigError(f"tune=true needs a val split; {type(datamodule).__name__} has none.")
    if not target.tuning_grid():
        raise ConfigError(
            f"tune=true: {type(target).__name__} has no decoding thresholds to tune (its instances come "
            "from the class map); tuning applies to target=distance and target=flows."
        )
    outputs = predict_split(predictor, datamodule, "val", progress)
    truths = datamodule.dataset("val").instances
    return tune_decoding(target, predictor.layout, outputs, truths, progress), outputs


def tune_and_store(
    checkpoint: str | Path,
    predictor: Predictor,
    datamodule: SegmentationDataModule,
    target: Target,
    progress: bool = True,
) -> tuple[TuningResult, list[np.ndarray]]:
    """:func:`tune_on_validation`, then the chosen settings written into ``checkpoint`` (on rank 0)."""
    result, outputs = tune_on_validation(predictor, datamodule, target, progress)
    if rank_zero_only.rank == 0:
        store_decoding(checkpoint, result.settings)
    log.info(
        "Decoding tuned on val: %s (AP50 %.4f, with the settings before %.4f); stored in %s",
        result.settings,
        result.score,
        result.previous_score,
        checkpoint,
    )
    return result, outputs


class TuneDecoding(pl.Callback):
    """Tune decoding on validation with the best checkpoint when fitting ends; see the module docstring."""

    def __init__(self, progress: bool = False) -> None:
        self.progress = progress

    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        datamodule = trainer.datamodule
        best = _best_path(trainer)
        if not pl_module.layout.has_regression or best is None or trainer.interrupted:
            return
        if datamodule is None or not datamodule.has_split("val"):
            return
        model = load_model(best)
        target = model.target
        if not target.tuning_grid():
            return
        # The data module's images are resized by data.scale already.
        predictor = Predictor(
            model, device=pl_module.device, channel_names=datamodule.channel_names, scale=1.0
        )
        result, _ = tune_and_store(best, predictor, datamodule, target, self.progress)
        pl_module.set_decoding(result.settings)
        for callback in trainer.callbacks:
            if isinstance(callback, RunSummary):
                callback.extra["decoding"] = result.describe()


def _best_path(trainer: pl.Trainer) -> Path | None:
    """The checkpoint kept for the monitored score (the first monitoring checkpoint callback)."""
    for callback in trainer.checkpoint_callbacks:
        if getattr(callback, "monitor", None) and callback.best_model_path:
            return Path(callback.best_model_path)
    return None
