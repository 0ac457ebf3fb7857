"""cellseg's ``hydra/sweeper=optuna`` (Hydra plugins must live in the hydra_plugins package).

It takes the place of hydra-optuna-sweeper's config of that name, with cellseg's defaults (the study
stored in the sweep folder, the direction from ``monitor_mode``, a pruner). Hydra imports every plugin
module at start-up, also for users without the ``sweep`` extra, so this face imports nothing of Optuna
until a search runs; :mod:`cellseg.optuna_search` does the work.
"""

from dataclasses import dataclass, field
from typing import Any

from hydra.core.config_store import ConfigStore
from hydra.plugins.sweeper import Sweeper
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig


class OptunaSweeper(Sweeper):
    def __init__(self, **config: Any) -> None:
        from cellseg.optuna_search import OptunaSearch

        self.search = OptunaSearch(**config)

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        self.search.setup(hydra_context=hydra_context, task_function=task_function, config=config)

    def sweep(self, arguments: list[str]) -> None:
        return self.search.sweep(arguments)


def _register() -> None:
    """Store cellseg's ``hydra/sweeper=optuna`` over the plugin's (imported first, so it stores first)."""
    try:
        from hydra_plugins.hydra_optuna_sweeper.config import OptunaSweeperConf
    except ImportError:
        return  # no sweep extra: cellseg's command-line check names it when a search is asked for

    @dataclass
    class CellsegOptunaConf(OptunaSweeperConf):
        """Every key of hydra-optuna-sweeper's, with these defaults, and a pruner."""

        _target_: str = "hydra_plugins.cellseg_plugins.optuna_sweeper.OptunaSweeper"
        direction: Any = None  # maximize when monitor_mode=max (val/dice), else minimize
        storage: Any = "sqlite:///${hydra.sweep.dir}/optuna.db"  # sweep.resume=<folder> continues it
        study_name: Any = "${task_name}"
        n_jobs: int = 1  # trials launched at once
        max_failure_rate: float = 1.0  # the share of failed trials that stops the search (1: never)
        # Stops unpromising trials from the monitored score of each epoch (null: never): not before
        # n_startup_trials have finished, nor before a trial's epoch n_warmup_steps.
        pruner: Any = field(
            default_factory=lambda: {
                "_target_": "optuna.pruners.MedianPruner",
                "n_startup_trials": 5,
                "n_warmup_steps": 3,
            }
        )

    ConfigStore.instance().store(
        group="hydra/sweeper", name="optuna", node=CellsegOptunaConf, provider="cellseg"
    )


_register()
