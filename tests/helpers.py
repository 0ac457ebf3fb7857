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


class KillAtBatch(pl.Callback):
    """SIGKILLs its own process at ``batch`` of ``epoch``: a pre-empted or OOM-killed job, no cleanup.

    With ``job``, only in the run whose folder is named so, and only while the environment variable
    ``CELLSEG_TEST_KILL`` is set: a sweep can then be resumed with the same overrides.
    """

    def __init__(self, epoch: int, batch: int, job: str | None = None) -> None:
        self.epoch, self.batch, self.job = epoch, batch, job

    def on_train_batch_start(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch, batch_idx
    ) -> None:
        import os
        import signal
        from pathlib import Path

        if self.job is not None and (
            not os.environ.get("CELLSEG_TEST_KILL") or Path(trainer.default_root_dir).name != self.job
        ):
            return
        if trainer.current_epoch == self.epoch and batch_idx == self.batch:
            os.kill(os.getpid(), signal.SIGKILL)


class PreemptAtBatch(pl.Callback):
    """Sends its own process the pre-emption signal submitit listens for (USR2) at ``batch`` of ``epoch``,
    in the run whose folder is named ``job``, unless the run resumed from a checkpoint (a requeued one)."""

    def __init__(self, epoch: int, batch: int, job: str) -> None:
        self.epoch, self.batch, self.job = epoch, batch, job

    def on_train_batch_start(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch, batch_idx
    ) -> None:
        import os
        import signal
        from pathlib import Path

        if trainer.ckpt_path is not None or Path(trainer.default_root_dir).name != self.job:
            return
        if trainer.current_epoch == self.epoch and batch_idx == self.batch:
            os.kill(os.getpid(), signal.SIGUSR2)
