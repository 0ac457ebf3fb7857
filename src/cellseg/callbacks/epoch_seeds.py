"""Every epoch starts from random states given by (seed, epoch), so a resumed run is the uninterrupted one.

Lightning restores weights, optimizer, scheduler and loop counters from a checkpoint, but not the
random streams: a run resumed at epoch k would crop, augment, shuffle and drop out differently from
one that never stopped. Here each training epoch reseeds torch (CPU and CUDA), numpy and Python's
``random`` from (seed, epoch), and tells the data module the epoch, whose samples then draw from
generators keyed by (seed, epoch, sample). Whatever happened before (a sanity check, a kill in the
middle of the epoch), epoch k draws the same numbers.
"""

from __future__ import annotations

import random

import numpy as np
import pytorch_lightning as pl
import torch

from cellseg.utils.seeds import epoch_seed


def seed_epoch(seed: int, epoch: int) -> None:
    """Reseed torch, numpy and Python's global generators for ``epoch``."""
    value = epoch_seed(seed, epoch)
    torch.manual_seed(value)  # CUDA devices too
    np.random.seed(value)
    random.seed(value)


class EpochSeeds(pl.Callback):
    """Reseeds the global generators and sets the data module's epoch at every training epoch start.

    A resumed run draws its first batch before any epoch hook (Lightning's fit loop prefetches it while
    setting up), so the epoch it resumes at is saved in the checkpoint and set when fitting starts.
    """

    def __init__(self, seed: int) -> None:
        self.seed = int(seed)
        self._trainer: pl.Trainer | None = None
        self._resume_epoch: int | None = None

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        self._trainer = trainer

    def state_dict(self) -> dict[str, int]:
        # Checkpoints are written at the end of an epoch: training goes on with the next one.
        return {"next_epoch": self._trainer.current_epoch + 1} if self._trainer is not None else {}

    def load_state_dict(self, state_dict: dict[str, int]) -> None:
        self._resume_epoch = state_dict.get("next_epoch")

    def _start_epoch(self, trainer: pl.Trainer, epoch: int) -> None:
        seed_epoch(self.seed, epoch)
        set_epoch = getattr(trainer.datamodule, "set_epoch", None)
        if set_epoch is not None:
            set_epoch(epoch)

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._start_epoch(trainer, self._resume_epoch or 0)
        self._resume_epoch = None

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._start_epoch(trainer, trainer.current_epoch)
