"""cellseg's ``hydra/launcher=slurm`` and ``hydra/launcher=slurm_local`` (Hydra plugins must live in
the hydra_plugins package).

Hydra imports every plugin module at start-up, also for users without the ``sweep`` extra, so these
faces import nothing of submitit until a launcher is configured; :mod:`cellseg.cluster` does the work.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from hydra.core.utils import JobReturn
from hydra.plugins.launcher import Launcher
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig


class _Face(Launcher):
    def __init__(self, **params: Any) -> None:
        self.jobs = self._jobs(**params)

    def _jobs(self, **params: Any) -> Launcher:
        raise NotImplementedError

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        self.jobs.setup(hydra_context=hydra_context, task_function=task_function, config=config)

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[JobReturn]:
        return self.jobs.launch(job_overrides, initial_job_idx)


class SlurmLauncher(_Face):
    def _jobs(self, **params: Any) -> Launcher:
        from cellseg.cluster import SlurmJobs

        return SlurmJobs(**params)


class LocalLauncher(_Face):
    def _jobs(self, **params: Any) -> Launcher:
        from cellseg.cluster import LocalJobs

        return LocalJobs(**params)
