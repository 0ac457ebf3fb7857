"""The job side of an Optuna search: report the monitored score of each epoch to the job's trial, and
stop the job when the search's pruner says the trial is unpromising (Optuna's Lightning callback).

A job of ``hydra/sweeper=optuna`` runs trial number ``hydra.job.num`` of the study named by its
sweeper config, so it finds the trial in the study's storage without being handed it.
"""

from __future__ import annotations

import logging

import optuna
import pytorch_lightning as pl
from hydra.core.hydra_config import HydraConfig
from hydra.utils import instantiate
from optuna.integration import PyTorchLightningPruningCallback

from cellseg.errors import ConfigError

log = logging.getLogger(__name__)


class TrialPruning(PyTorchLightningPruningCallback):
    """Optuna's pruning callback, quiet during Lightning's sanity check (whose scores are no epoch's)."""

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not trainer.sanity_checking:
            super().on_validation_end(trainer, pl_module)


def trial_pruning(monitor: str) -> TrialPruning | None:
    """The pruning callback of the trial this job runs; None when its search has no pruner."""
    hydra_cfg = HydraConfig.get()
    sweeper = hydra_cfg.sweeper
    if sweeper.get("pruner") is None:
        return None
    study = optuna.load_study(
        study_name=sweeper.study_name, storage=sweeper.storage, pruner=instantiate(sweeper.pruner)
    )
    number = int(hydra_cfg.job.num)
    trial = next((t for t in study.get_trials(deepcopy=False) if t.number == number), None)
    if trial is None:
        raise ConfigError(
            f"The Optuna study '{sweeper.study_name}' in {sweeper.storage} has no trial {number}."
        )
    return TrialPruning(optuna.trial.Trial(study, trial._trial_id), monitor=monitor)
