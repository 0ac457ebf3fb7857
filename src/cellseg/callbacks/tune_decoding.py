"""At the end of training, tune the decoding thresholds of ``target=distance`` / ``target=flows`` on the
val split (as ``python -m cellseg.evaluate tune=true`` does) and store them in the best checkpoint.

So a run's checkpoint is ready to predict with the thresholds that suit it, the test stage that follows
scores with them, and ``metrics.json`` records them (``decoding``). Targets whose instances come from the
class map have nothing to tune: the callback does nothing for them.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pytorch_lightning as pl
from pytorch_lightning.utilities import rank_zero_only

from cellseg.callbacks.run_summary import RunSummary

log = logging.getLogger(__name__)


class TuneDecoding(pl.Callback):
    """Tune decoding on validation with the best checkpoint when fitting ends; see the module docstring."""

    def __init__(self, progress: bool = False) -> None:
        self.progress = progress

    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        from cellseg.evaluation import tune_on_validation
        from cellseg.inference.checkpoint import load_model
        from cellseg.inference.predictor import Predictor
        from cellseg.instances.tuning import store_decoding

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
        predictor = Predictor(model, device=pl_module.device, channel_names=datamodule.channel_names)
        result, _ = tune_on_validation(predictor, datamodule, target, self.progress)
        if rank_zero_only.rank == 0:
            store_decoding(best, result.settings)
        pl_module.set_decoding(result.settings)
        for callback in trainer.callbacks:
            if isinstance(callback, RunSummary):
                callback.extra["decoding"] = result.describe()
        log.info(
            "Decoding tuned on val: %s (AP50 %.4f, defaults %.4f); stored in %s",
            result.settings,
            result.score,
            result.default_score,
            best,
        )


def _best_path(trainer: pl.Trainer) -> Path | None:
    """The checkpoint kept for the monitored score (the first monitoring checkpoint callback)."""
    for callback in trainer.checkpoint_callbacks:
        if getattr(callback, "monitor", None) and callback.best_model_path:
            return Path(callback.best_model_path)
    return None
