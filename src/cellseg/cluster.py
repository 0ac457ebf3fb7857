"""``hydra/launcher=slurm`` (and ``slurm_local``, its twin on this machine): hydra-submitit-launcher's
launchers, with a pre-empted or timed-out job requeued to go on from its ``last.ckpt``.

submitit catches the cluster's signal before the kill, asks the running job how to restart it
(``checkpoint``), requeues it and stops it. The restarted job gets ``sweep.requeued=true``: it runs in
its own folder again and resumes there (:func:`cellseg.sweep_resume.requeued_job`), with every random
stream where the checkpoint left it, so it ends as it would have without the interruption.
"""

from __future__ import annotations

import os
from typing import Any

from hydra.core.utils import JobReturn
from hydra_plugins.hydra_submitit_launcher import submitit_launcher

REQUEUED = "sweep.requeued=true"


def job_overrides(overrides: list[str], requeued: bool) -> list[str]:
    """A job's overrides, marked ``sweep.requeued=true`` when it runs again: restarted by submitit after
    the pre-emption signal, or requeued by SLURM itself (pre-emption without the signal, a node failure:
    SLURM then sets ``SLURM_RESTART_COUNT``)."""
    again = requeued or int(os.environ.get("SLURM_RESTART_COUNT") or 0) > 0
    kept = [o for o in overrides if not o.startswith("sweep.requeued=")]
    return [*kept, REQUEUED] if again else kept


class _Requeueing(submitit_launcher.BaseSubmititLauncher):
    """What both launchers add: a job restarted by submitit knows it was requeued."""

    def __call__(
        self,
        sweep_overrides: list[str],
        job_dir_key: str,
        job_num: int,
        job_id: str,
        singleton_state: dict[type, Any],
        requeued: bool = False,
    ) -> JobReturn:
        return super().__call__(
            job_overrides(sweep_overrides, requeued), job_dir_key, job_num, job_id, singleton_state
        )

    def checkpoint(self, *args: Any, **kwargs: Any) -> Any:
        """Called by submitit on pre-emption or time-out: the same job, marked as requeued."""
        import submitit

        return submitit.helpers.DelayedSubmission(self, *args, **{**kwargs, "requeued": True})


class SlurmJobs(_Requeueing, submitit_launcher.SlurmLauncher):
    """One SLURM job per run of the sweep."""


class LocalJobs(_Requeueing, submitit_launcher.LocalLauncher):
    """One process per run, on this machine, with the SLURM launcher's requeueing (to test it, or to
    run a sweep detached from the terminal)."""
