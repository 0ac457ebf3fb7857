"""One training run, as ``python -m cellseg.train`` starts it: wire the parts, train, test, report.

Every part is built by :mod:`cellseg.build` from its config group, and the run directory contract
(``metrics.json``, checkpoints, TensorBoard) is kept by callbacks. The command imports this module (and
with it torch and Lightning) only once its command line has passed the early checks, so that a typo is
reported in a second, not after the ten it takes to import them.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
from hydra.utils import instantiate
from omegaconf import DictConfig
from pytorch_lightning.utilities.rank_zero import rank_zero_only

from cellseg import __version__
from cellseg.build import (
    build_callbacks,
    build_loggers,
    build_training,
    build_trial_pruning,
    resolve_precision,
)
from cellseg.callbacks.epoch_log import EpochLog
from cellseg.callbacks.epoch_seeds import EpochSeeds
from cellseg.callbacks.run_summary import RunSummary, print_run_summary, write_rejected_run
from cellseg.errors import CellsegError
from cellseg.hparams import hparams_metrics, hydra_runtime, log_hyperparameters
from cellseg.lr_finder import is_auto, learning_rate_for_run
from cellseg.preflight import (
    check_monitor,
    check_resume_fits,
    check_training_values,
    read_resume_checkpoint,
)
from cellseg.runs import check_new_run_dir
from cellseg.sweep_resume import kept_results, planned_job, requeued_job
from cellseg.utils.ddp import ddp_job_scope
from cellseg.utils.logs import route_lightning_logs

log = logging.getLogger(__name__)


def _best_checkpoint(trainer: pl.Trainer, monitor: str) -> str | None:
    """Path of the checkpoint kept for being best on ``monitor`` (None before any was saved)."""
    paths = (c.best_model_path for c in trainer.checkpoint_callbacks if c.monitor == monitor)
    return next((p for p in paths if p), None)


def _run_info(cfg: DictConfig, ckpt_path: str | None) -> dict[str, Any]:
    """What metrics.json records about the run besides its scores."""
    return {
        "run_dir": str(Path(cfg.paths.run_dir).resolve()),
        "task_name": cfg.task_name,
        "tags": list(cfg.tags),
        "seed": cfg.seed,
        "cellseg_version": __version__,
        "resumed_from": ckpt_path,
        **hydra_runtime(),
    }


def train(cfg: DictConfig) -> dict[str, Any]:
    """Train (and test) one model as configured; returns the run summary written to metrics.json."""
    route_lightning_logs()
    run_dir = Path(cfg.paths.run_dir)
    job = planned_job(cfg.sweep.resume, run_dir) if cfg.sweep.resume else None
    if cfg.sweep.requeued:  # a cluster runs this job again after pre-empting it: it goes on in its folder
        job = requeued_job(run_dir, job)
    if job is not None and job.action == "skip":
        log.info("This job completed before; its results are kept as they are.")
        return kept_results(run_dir)
    check_training_values(cfg)
    resume = read_resume_checkpoint(
        job.ckpt_path if job is not None and job.action == "resume" else cfg.get("ckpt_path")
    )
    ckpt_path = resume[0] if resume else None
    if rank_zero_only.rank == 0 and not cfg.sweep.requeued:
        check_new_run_dir(run_dir)
    pl.seed_everything(cfg.seed, workers=True)

    datamodule, module = build_training(cfg)
    check_monitor(cfg.monitor, module)
    if resume:
        check_resume_fits(*resume, module, cfg.trainer.get("max_epochs") if cfg.train else None)
    if rank_zero_only.rank == 0:
        run_dir.mkdir(parents=True, exist_ok=True)  # only now: a run refused by its checks leaves no folder
    runtime = hydra_runtime()
    summary = RunSummary(run_dir, monitor=cfg.monitor, mode=cfg.monitor_mode, info=_run_info(cfg, ckpt_path))
    trainer: pl.Trainer = instantiate(
        cfg.trainer,
        precision=resolve_precision(cfg.trainer.precision),
        callbacks=[
            *build_callbacks(cfg),
            summary,
            EpochLog(cfg.monitor, cfg.monitor_mode),
            EpochSeeds(cfg.seed),
            *build_trial_pruning(cfg),
        ],
        logger=build_loggers(cfg) or False,
    )
    if is_auto(cfg.optimizer):
        summary.extra["lr_find"] = learning_rate_for_run(cfg, trainer, module, datamodule, ckpt_path)
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


def record_rejection(error: CellsegError, cfg: DictConfig) -> None:
    """A sweep's job refused by its checks: its metrics.json says so, and the sweep goes on."""
    if rank_zero_only.rank == 0:
        write_rejected_run(Path(cfg.paths.run_dir), cfg.monitor, _run_info(cfg, cfg.get("ckpt_path")), error)
