"""Test-only callbacks, referenced from configs by ``_target_``."""

from __future__ import annotations

import pytorch_lightning as pl


class CrashAtEpoch(pl.Callback):
    """Raises at the start of ``epoch``, as a crash (out of memory, a bad file) would."""

    def __init__(self, epoch: int) -> None:
        self.epoch = epoch

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.current_epoch == self.epoch:
            raise RuntimeError(f"simulated crash at epoch {self.epoch}")
