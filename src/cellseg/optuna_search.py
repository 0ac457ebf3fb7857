"""``hydra/sweeper=optuna``: an Optuna search over cellseg's config, built on hydra-optuna-sweeper.

hydra-optuna-sweeper parses the search space (``optimizer.lr=tag(log, interval(1e-4, 1e-2))``,
``augmentation=choice(basic, elastic)``) and turns trials into job overrides; this subclass changes
its loop where a search of long training jobs needs it:

- the study lives in the sweep folder (SQLite), and ``sweep.resume=<folder>`` continues it: trials an
  interrupted search left running are run again (their jobs resume from ``last.ckpt``), and only the
  trials still missing from ``n_trials`` are asked for;
- trial ``n`` runs as job ``n`` (folder ``<sweep>/<n>``), so a job finds its trial and reports to the
  pruner through Lightning (:mod:`cellseg.callbacks.pruning`), and a pruned job is told ``PRUNED``;
- a job that fails or is refused by its checks is told ``FAIL`` and the search goes on (its
  ``metrics.json`` says why; the sweep's closing line counts it), unless more than
  ``max_failure_rate`` of the trials failed.
"""

from __future__ import annotations

import functools
import logging
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import optuna
from hydra.core.utils import JobReturn, JobStatus
from hydra_plugins.hydra_optuna_sweeper._impl import OptunaSweeperImpl, create_params_from_overrides
from omegaconf import DictConfig, OmegaConf
from optuna.trial import FrozenTrial, Trial, TrialState

from cellseg.errors import ConfigError

log = logging.getLogger(__name__)


class OptunaSearch(OptunaSweeperImpl):
    """hydra-optuna-sweeper's sweeper with a stored, resumable study, pruning and contained failures."""

    def __init__(self, pruner: Any = None, **config: Any) -> None:
        super().__init__(**config)
        self.pruner = pruner

    def setup(self, *, hydra_context: Any, task_function: Any, config: DictConfig) -> None:
        super().setup(hydra_context=hydra_context, task_function=task_function, config=config)
        if self.direction is None:  # follow what the runs monitor: val/dice is maximised, a loss minimised
            self.direction = "maximize" if config.get("monitor_mode", "max") == "max" else "minimize"

    def _search_space(self, arguments: Sequence[str]) -> tuple[dict[str, Any], dict[str, Any]]:
        """The distributions to sample and the fixed overrides of every trial."""
        self._process_searchspace_config()
        distributions, fixed = create_params_from_overrides(
            [*self._parse_sweeper_params_config(), *arguments]
        )
        distributions = {**(self.search_space_distributions or {}), **distributions}
        for name in fixed:
            distributions.pop(name, None)
        if isinstance(self.sampler, functools.partial) and self.sampler.func == optuna.samplers.GridSampler:
            grid = {name: self._to_grid_sampler_choices(d) for name, d in distributions.items()}
            self.sampler = self.sampler(grid)
            self.n_trials = min(self.n_trials, math.prod(len(v) for v in grid.values()))
        return distributions, fixed

    def sweep(self, arguments: list[str]) -> None:
        directions = self._get_directions()
        if len(directions) != 1:
            raise ConfigError(
                f"hydra.sweeper.direction: a cellseg run returns one score (its monitor), got {directions}."
            )
        distributions, fixed = self._search_space(arguments)
        OmegaConf.save(self.config, Path(self.config.hydra.sweep.dir) / "multirun.yaml")  # as Hydra's sweeper
        study = optuna.create_study(
            study_name=self.study_name,
            storage=self.storage,
            sampler=self.sampler,
            pruner=self.pruner,
            direction=directions[0],
            load_if_exists=True,
        )
        log.info(
            "Optuna study '%s' in %s: %s, %s", study.study_name, self.storage, directions[0], self.sampler
        )
        for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            log.info("Trial %d was interrupted: running it again", trial.number)
            overrides = [f"{name}={value}" for name, value in {**trial.params, **fixed}.items()]
            self._run(study, [trial], [overrides])
        while (missing := self.n_trials - len(study.trials)) > 0 and not self._too_many_failures(study):
            trials = [study.ask() for _ in range(min(self.n_jobs, missing))]
            self._run(study, trials, self._configure_trials(trials, distributions, fixed))
        self._report(study)

    def _run(
        self, study: optuna.Study, trials: Sequence[Trial | FrozenTrial], overrides: Sequence[Sequence[str]]
    ) -> None:
        """Run ``trials`` as the jobs of their numbers and tell the study how each ended."""
        first = trials[0].number
        if [t.number for t in trials] != list(range(first, first + len(trials))):
            raise ConfigError(
                f"Another process is adding trials to the Optuna study '{study.study_name}' in {self.storage}: "
                "give each search a study of its own (hydra.sweeper.study_name=...)."
            )
        for trial, result in zip(trials, self.launcher.launch(overrides, initial_job_idx=first), strict=True):
            state, value, reason = _outcome(result)
            if state != TrialState.COMPLETE:
                log.warning("Trial %d %s: %s", trial.number, state.name.lower(), reason)
            study.tell(trial.number, value, state=state)

    def _too_many_failures(self, study: optuna.Study) -> bool:
        """Whether more than ``max_failure_rate`` of the ended trials failed (the search then stops)."""
        ended = [t for t in study.get_trials(deepcopy=False) if t.state.is_finished()]
        failed = sum(t.state == TrialState.FAIL for t in ended)
        if ended and failed / len(ended) > self.max_failure_rate:
            log.error(
                "Optuna: %d of %d trials failed (max_failure_rate=%s): stopping the search.",
                failed,
                len(ended),
                self.max_failure_rate,
            )
            return True
        return False

    def _report(self, study: optuna.Study) -> None:
        """Log the search's outcome and save the best trial to ``optimization_results.yaml``."""
        counts = {s.name.lower(): len(study.get_trials(deepcopy=False, states=(s,))) for s in TrialState}
        log.info("Optuna: %s", ", ".join(f"{n} {s}" for s, n in counts.items() if n) or "no trials")
        completed = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
        if not completed:
            log.warning("Optuna: no trial completed, so there is no best one.")
            return
        best = study.best_trial
        log.info("Best trial %d: %s with %s", best.number, best.value, best.params)
        OmegaConf.save(
            OmegaConf.create(
                {
                    "name": "optuna",
                    "best_trial": best.number,
                    "best_params": best.params,
                    "best_value": best.value,
                }
            ),
            f"{self.config.hydra.sweep.dir}/optimization_results.yaml",
        )


def _outcome(result: JobReturn) -> tuple[TrialState, float | None, str]:
    """A finished job as a trial state, its value and what went wrong: a job refused by its checks
    returns None, a pruned one raised TrialPruned, and a score that is not a finite number cannot rank
    the trial."""
    value = result._return_value
    if result.status == JobStatus.FAILED:
        if isinstance(value, optuna.TrialPruned):
            return TrialState.PRUNED, None, str(value)
        return TrialState.FAIL, None, f"{type(value).__name__}: {value}"
    if value is None:
        return TrialState.FAIL, None, "refused by its checks (see its metrics.json)"
    if not isinstance(value, int | float) or not math.isfinite(value):
        return TrialState.FAIL, None, f"its score is {value}, not a finite number"
    return TrialState.COMPLETE, float(value), ""
