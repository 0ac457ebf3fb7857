"""``python -m cellseg.train``: compose the config, wire the parts, train, test, report.

This module only wires: every part is built by :mod:`cellseg.build` from its config group,
and the run directory contract (``metrics.json``, checkpoints, TensorBoard) is kept by callbacks.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import hydra
import pytorch_lightning as pl
from hydra.utils import instantiate
from omegaconf import DictConfig
from pytorch_lightning.utilities.rank_zero import rank_zero_only

from cellseg import __version__
from cellseg.build import build_callbacks, build_loggers, build_training
from cellseg.callbacks.epoch_log import EpochLog
from cellseg.callbacks.run_summary import RunSummary, print_run_summary
from cellseg.cli import exit_on_bad_input, run_command
from cellseg.config import config_dir
from cellseg.errors import ConfigError
from cellseg.hparams import hparams_metrics, hydra_runtime, log_hyperparameters
from cellseg.lr_finder import LRFindSettings, find_learning_rate, is_auto, set_learning_rate, write_lr_find
from cellseg.runs import check_checkpoint, prepare_run_dir
from cellseg.utils.ddp import ddp_job_scope
from cellseg.utils.logs import route_lightning_logs

log = logging.getLogger(__name__)


def _best_checkpoint(trainer: pl.Trainer, monitor: str) -> str | None:
    """Path of the checkpoint kept for being best on ``monitor`` (None before any was saved)."""
    paths = (c.best_model_path for c in trainer.checkpoint_callbacks if c.monitor == monitor)
    return next((p for p in paths if p), None)


def _find_learning_rate(
    cfg: DictConfig, trainer: pl.Trainer, module: pl.LightningModule, datamodule: Any, ckpt_path: str | None
) -> dict[str, Any]:
    """optimizer.lr=auto: the range test's suggestion becomes the rate; returns what metrics.json records."""
    if ckpt_path is not None:
        raise ConfigError("optimizer.lr=auto cannot resume a run: pass the rate the run was found with.")
    settings = LRFindSettings(**cfg.lr_find)
    set_learning_rate(module, settings.min_lr)  # a number to build the optimizer with; the test sets its own
    found = find_learning_rate(trainer, module, datamodule, settings)
    if found.suggestion is None:
        raise ConfigError(
            "optimizer.lr=auto: the range test found no falling loss to suggest a rate from; widen "
            "lr_find.min_lr/max_lr, raise lr_find.num_training, or set optimizer.lr."
        )
    set_learning_rate(module, found.suggestion)
    if trainer.is_global_zero:
        write_lr_find(found, Path(cfg.paths.run_dir), None)
    log.info("optimizer.lr=auto: training with the range test's suggestion %.3g", found.suggestion)
    return {"suggestion": found.suggestion, "settings": found.as_dict()["settings"]}


def train(cfg: DictConfig) -> dict[str, Any]:
    """Train (and test) one model as configured; returns the run summary written to metrics.json."""
    route_lightning_logs()
    run_dir = Path(cfg.paths.run_dir)
    ckpt_path = check_checkpoint(cfg.get("ckpt_path"))
    if rank_zero_only.rank == 0:
        prepare_run_dir(run_dir)
    pl.seed_everything(cfg.seed, workers=True)

    datamodule, module = build_training(cfg)
    runtime = hydra_runtime()
    summary = RunSummary(
        run_dir,
        monitor=cfg.monitor,
        mode=cfg.monitor_mode,
        info={
            "run_dir": str(run_dir.resolve()),
            "task_name": cfg.task_name,
            "tags": list(cfg.tags),
            "seed": cfg.seed,
            "cellseg_version": __version__,
            "resumed_from": ckpt_path,
            **runtime,
        },
    )
    trainer: pl.Trainer = instantiate(
        cfg.trainer,
        callbacks=[*build_callbacks(cfg), summary, EpochLog(cfg.monitor, cfg.monitor_mode)],
        logger=build_loggers(cfg) or False,
    )
    if is_auto(cfg.optimizer):
        summary.extra["lr_find"] = _find_learning_rate(cfg, trainer, module, datamodule, ckpt_path)
    log_hyperparameters(trainer, cfg, module, runtime)

    with ddp_job_scope():
        if cfg.train:
            trainer.fit(module, datamodule=datamodule, ckpt_path=ckpt_path)
        best_path = _best_checkpoint(trainer, cfg.monitor)
        summary.extra["checkpoints"] = {"best": best_path, "last": str(run_dir / "checkpoints" / "last.ckpt")}
        if cfg.test and datamodule.has_split("test"):
            test_ckpt = best_path if cfg.train else ckpt_path
            results = trainer.test(module, datamodule=datamodule, ckpt_path=test_ckpt, verbose=False)
            summary.extra["test"] = {k: float(v) for k, v in (results[0] if results else {}).items()}
            summary.extra["test_checkpoint"] = test_ckpt
        elif cfg.test:
            log.info(
                "test=true but %s has no test split; skipping the test stage.", type(datamodule).__name__
            )

    final = summary.history[-1] if summary.history else None
    scores = hparams_metrics(cfg, summary.best_entry(), final)
    for logger in trainer.loggers:
        if scores:
            logger.log_metrics(scores, step=trainer.global_step)
    summary.write(trainer)
    if trainer.is_global_zero:
        print_run_summary(summary.summary())
    return summary.summary()


@hydra.main(version_base="1.3", config_path=str(config_dir()), config_name="train")
def _hydra_main(cfg: DictConfig) -> float | None:
    """Hydra entry point; returns the monitored best value so Hydra sweepers can optimise it."""
    result = exit_on_bad_input(train)(cfg)
    best = result.get("best") or {}
    return best.get(cfg.monitor)


def main() -> None:
    run_command("train", _hydra_main)


if __name__ == "__main__":
    main()
