"""One line per epoch with the main scores, in the run's log file (and on a console without a progress bar).

A run on a cluster writes to a file, not a terminal: without this line its log says nothing for hours.
"""

from __future__ import annotations

import logging
import math
import sys
import time
from collections.abc import Mapping

import pytorch_lightning as pl
import torch

from cellseg.stage_metrics import MAIN_SCORES

log = logging.getLogger("cellseg.train")


def _value(metrics: Mapping[str, object], key: str) -> float | None:
    value = metrics.get(key)
    if torch.is_tensor(value) and value.numel() == 1:
        value = value.item()
    return float(value) if isinstance(value, (int, float)) and math.isfinite(value) else None


def epoch_line(
    epoch: int,
    max_epochs: int,
    metrics: Mapping[str, object],
    monitor: str,
    best: float | None,
    seconds: float,
) -> str:
    """``epoch 3/10: train/loss 0.231, val/loss 0.198, val/dice 0.951 (best 0.951), ... 12.3 s``."""
    keys = ["train/loss", "val/loss", monitor, *(k for k in MAIN_SCORES if k != monitor)]
    parts = []
    for key in keys:
        value = _value(metrics, key)
        if value is None:
            continue
        best_note = f" (best {best:.4g})" if key == monitor and best is not None else ""
        parts.append(f"{key} {value:.4g}{best_note}")
    total = f"/{max_epochs}" if max_epochs > 0 else ""
    return f"epoch {epoch + 1}{total}: {', '.join(parts) or 'no scores yet'}, {seconds:.1f} s"


class EpochLog(pl.Callback):
    """Logs :func:`epoch_line` at the end of each training epoch (after its validation), on rank zero.

    The training loss is the mean over the epoch's batches, summed on the device (no host sync per step).
    """

    def __init__(self, monitor: str = "val/dice", mode: str = "max") -> None:
        self.monitor = monitor
        self.better = max if mode == "max" else min
        self.best: float | None = None
        self._started = time.monotonic()
        self._loss_sum: torch.Tensor | None = None
        self._batches = 0

    def state_dict(self) -> dict[str, float | None]:
        return {"best": self.best}

    def load_state_dict(self, state_dict: dict[str, float | None]) -> None:
        self.best = state_dict.get("best", self.best)

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._started = time.monotonic()
        self._loss_sum, self._batches = None, 0

    def on_train_batch_end(
        self,
        trainer: pl.Trainer,
        pl_module: pl.LightningModule,
        outputs: object,
        batch: object,
        batch_idx: int,
    ) -> None:
        loss = outputs.get("loss") if isinstance(outputs, Mapping) else outputs
        if torch.is_tensor(loss):
            loss = loss.detach().float()
            self._loss_sum = loss if self._loss_sum is None else self._loss_sum + loss
            self._batches += 1

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not trainer.is_global_zero:
            return
        metrics = dict(trainer.callback_metrics)
        if self._loss_sum is not None:
            metrics["train/loss"] = self._loss_sum.item() / self._batches
        current = _value(metrics, self.monitor)
        if current is not None:
            self.best = current if self.best is None else self.better(self.best, current)
        line = epoch_line(
            trainer.current_epoch,
            trainer.max_epochs or -1,
            metrics,
            self.monitor,
            self.best,
            time.monotonic() - self._started,
        )
        # A progress bar on a terminal already shows these numbers; a file or pipe needs the line.
        console = trainer.progress_bar_callback is None or not sys.stdout.isatty()
        log.info(line, extra={"console": console})
