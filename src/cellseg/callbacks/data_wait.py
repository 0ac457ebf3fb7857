"""How long training waits for data: a GPU that trains hundreds of crops a second starves on a loader
that augments on one core. The share is logged per epoch, and a warning says what to change."""

from __future__ import annotations

import time

import pytorch_lightning as pl
from pytorch_lightning.accelerators import CUDAAccelerator
from pytorch_lightning.utilities import rank_zero_warn


class DataWait(pl.Callback):
    """Logs ``perf/data_wait``: the share of an epoch's training time spent between the end of one
    batch and the start of the next (fetching, collating, copying it), and warns on a GPU when it is
    above ``warn_above``. The first batch of an epoch is not counted: it includes the workers' start."""

    def __init__(self, warn_above: float = 0.10) -> None:
        if not 0.0 < warn_above <= 1.0:
            raise ValueError(f"DataWait.warn_above must be in (0, 1], got {warn_above}.")
        self.warn_above = warn_above
        self.share: float | None = None
        self._reset()

    def _reset(self) -> None:
        self._waiting = self._stepping = 0.0
        self._batch_started: float | None = None
        self._batch_ended: float | None = None

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._reset()

    def on_train_batch_start(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch, batch_idx: int
    ) -> None:
        now = time.perf_counter()
        if self._batch_ended is not None:
            self._waiting += now - self._batch_ended
        self._batch_started = now

    def on_train_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs, batch, batch_idx: int
    ) -> None:
        now = time.perf_counter()
        if self._batch_started is not None:
            self._stepping += now - self._batch_started
        self._batch_ended = now

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        total = self._waiting + self._stepping
        if self._batch_ended is None or total <= 0.0:
            return
        self.share = self._waiting / total
        pl_module.log("perf/data_wait", self.share, on_epoch=True, sync_dist=True)
        if isinstance(trainer.accelerator, CUDAAccelerator) and self.share > self.warn_above:
            rank_zero_warn(
                f"Training waited for data {self.share:.0%} of epoch {trainer.current_epoch}'s time "
                f"(above {self.warn_above:.0%}): raise data.num_workers (auto uses every usable core), "
                "or augment on the GPU (augmentation.device=gpu)."
            )
