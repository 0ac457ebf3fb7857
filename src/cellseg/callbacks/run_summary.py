"""Keeps ``metrics.json`` in the run directory up to date: per-epoch history, best and final scores.

Every later tool (sweep comparison, reports) reads this file, so it is rewritten atomically after
every epoch, marked ``failed`` if training raises, and its history travels in the checkpoint so a
resumed run continues it.
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from rich.console import Console

from cellseg.errors import ConfigError
from cellseg.utils.io import write_json_atomic
from cellseg.utils.processes import process_identity
from cellseg.utils.tables import print_score_table


def _scalar_metrics(metrics: Mapping[str, Any], prefix: str) -> dict[str, float]:
    return {
        key: float(value)
        for key, value in sorted(metrics.items())
        if key.startswith(prefix)
        and not key.endswith("_step")
        and (not torch.is_tensor(value) or value.numel() == 1)
    }


class RunSummary(pl.Callback):
    """Writes ``<run_dir>/metrics.json``; only the global-zero process writes."""

    def __init__(
        self,
        run_dir: str | Path,
        monitor: str = "val/dice",
        mode: str = "max",
        info: Mapping[str, Any] | None = None,
    ) -> None:
        if mode not in ("min", "max"):
            raise ConfigError(f"RunSummary mode must be 'min' or 'max', got '{mode}'.")
        self.path = Path(run_dir) / "metrics.json"
        self.monitor = monitor
        self.mode = mode
        self.info = dict(info or {})
        self.history: list[dict[str, Any]] = []
        self.extra: dict[str, Any] = {}
        self.status = "running"
        self.error: str | None = None
        self.process: dict[str, Any] | None = None  # the training process, tells readers if it was killed
        self._started = time.monotonic()
        self._previous_wall_time = 0.0
        self._stale_train: dict[str, Any] = {}

    # -- checkpointed state: history and time already spent, so a resumed run continues both
    def state_dict(self) -> dict[str, Any]:
        return {"history": self.history, "wall_time_s": self.wall_time_s}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        if self.history:
            return  # trainer.test(ckpt_path=best) restores callbacks too; this run's history wins
        self.history = list(state_dict.get("history", []))
        self._previous_wall_time = float(state_dict.get("wall_time_s", 0.0))

    @property
    def wall_time_s(self) -> float:
        return self._previous_wall_time + time.monotonic() - self._started

    def best_entry(self) -> dict[str, Any] | None:
        """The epoch whose monitored metric is best (the first one on ties)."""
        scored = [
            e
            for e in self.history
            if isinstance(e.get(self.monitor), float) and math.isfinite(e[self.monitor])
        ]
        if not scored:
            return None
        pick = max if self.mode == "max" else min
        return pick(scored, key=lambda e: e[self.monitor])

    def summary(self) -> dict[str, Any]:
        final = self.history[-1] if self.history else None
        return {
            "status": self.status,
            "error": self.error,
            "process": self.process,
            **self.info,
            "monitor": {"metric": self.monitor, "mode": self.mode},
            "epochs_run": len({e["epoch"] for e in self.history}),
            "wall_time_s": round(self.wall_time_s, 2),
            "best": self.best_entry(),
            "final": final,
            **self.extra,
            "history": self.history,
        }

    def write(self, trainer: pl.Trainer) -> None:
        if trainer.is_global_zero:
            write_json_atomic(self.path, self.summary())

    # -- hooks
    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._started = time.monotonic()
        self.status = "running"
        self.process = process_identity()  # here, not in __init__: under DDP spawn rank 0 is a new process
        self.write(trainer)

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.sanity_checking or trainer.state.fn != "fit":
            return
        entry = {"epoch": trainer.current_epoch, "step": trainer.global_step}
        entry.update(_scalar_metrics(trainer.callback_metrics, "val/"))
        self.history.append(entry)
        # The train scores visible now belong to the previous epoch; remember them to tell them apart.
        self._stale_train = {k: v for k, v in trainer.callback_metrics.items() if k.startswith("train/")}
        self.write(trainer)

    def on_save_checkpoint(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, checkpoint: dict
    ) -> None:
        """last.ckpt is saved after the epoch's train scores are logged: put them in the saved history."""
        fresh = {
            k: v
            for k, v in trainer.callback_metrics.items()
            if k.startswith("train/") and self._stale_train.get(k) is not v
        }
        if fresh and self.history and self.history[-1]["epoch"] == trainer.current_epoch:
            self.history[-1].update(_scalar_metrics(fresh, "train/"))

    def _add_train_metrics(self, trainer: pl.Trainer, epoch: int) -> None:
        """Train scores of an epoch are logged after its validation; attach them once they exist."""
        if self.history and self.history[-1]["epoch"] == epoch:
            self.history[-1].update(_scalar_metrics(trainer.callback_metrics, "train/"))

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.current_epoch > 0:
            self._add_train_metrics(trainer, trainer.current_epoch - 1)
            self.write(trainer)

    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.history:
            self._add_train_metrics(trainer, self.history[-1]["epoch"])
        self.status = "completed"
        self.write(trainer)

    def on_exception(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException
    ) -> None:
        self.status = exception_status(exception)
        self.error = f"{type(exception).__name__}: {exception}"
        self.write(trainer)


def exception_status(exception: BaseException) -> str:
    """How a run that raised ``exception`` ended: ``interrupted`` (Ctrl-C, or a cluster's pre-emption
    signal, which submitit turns into an exit), ``pruned`` (an Optuna pruner stopped it) or ``failed``."""
    if isinstance(exception, KeyboardInterrupt | SystemExit):
        return "interrupted"
    optuna = sys.modules.get("optuna")  # only a job that imported it can be pruned
    if optuna is not None and isinstance(exception, optuna.TrialPruned):
        return "pruned"
    return "failed"


def write_rejected_run(run_dir: Path, monitor: str, info: Mapping[str, Any], error: BaseException) -> None:
    """metrics.json of a job refused by its checks before it started: status ``rejected`` and why."""
    summary = RunSummary(run_dir, monitor=monitor, info=info)
    summary.status, summary.error = "rejected", str(error)
    run_dir.mkdir(parents=True, exist_ok=True)
    write_json_atomic(summary.path, {**summary.summary(), "wall_time_s": 0.0})


def print_run_summary(summary: Mapping[str, Any], console: Console | None = None) -> None:
    """Final, best and test scores side by side, one metric per row, then epochs, time and status."""
    best, final = summary.get("best") or {}, summary.get("final") or {}
    test = summary.get("test") or {}
    names = sorted({k.split("/", 1)[1] for k in (*best, *final, *test) if "/" in k})

    def stage(scores: Mapping[str, Any], prefix: str) -> dict[str, float | None]:
        return {name: scores.get(prefix + name) for name in names}

    columns = [
        (f"best (epoch {best.get('epoch')})", stage(best, "val/")),
        (f"final (epoch {final.get('epoch')})", stage(final, "val/")),
    ]
    if test:
        columns.append(("test (best ckpt)", stage(test, "test/")))
    print_score_table(f"cellseg run: {summary.get('run_dir', '')}", columns, names, console)
    print(
        f"epochs run: {summary.get('epochs_run')}, wall time: {summary.get('wall_time_s')} s, "
        f"status: {summary.get('status')}"
    )
