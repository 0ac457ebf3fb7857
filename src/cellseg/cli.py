"""What every ``python -m cellseg.<command>`` shares: early checks, one-line errors for bad input, a new
folder of its own for each run, and sweeps that run every job and end with a count of those that failed."""

from __future__ import annotations

import functools
import json
import logging
import os
import sys
import warnings
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TypeVar

from omegaconf import DictConfig, OmegaConf

from cellseg.config import check_command_line, is_multirun, sets_key
from cellseg.errors import CellsegError, ConfigError, find_cellseg_error
from cellseg.runs import (
    claim_given_folder,
    claim_new_folder,
    remove_unstarted_run,
    run_entries,
    run_status,
    sweep_entries,
)
from cellseg.sweep_resume import (
    BASIC_SWEEPER,
    FINAL_STATUSES,
    OPTUNA_SWEEPER,
    RESUMED_SUBDIR,
    apply_plan,
    check_same_search,
    describe_plan,
    finish_resume,
    plan_resume,
    plan_resume_folders,
    sweep_jobs,
)

log = logging.getLogger("cellseg")
Result = TypeVar("Result")
#: Exit status of a command refused for bad input (argparse's convention), and of a sweep with failed jobs.
BAD_INPUT, FAILED_JOBS = 2, 1


def _in_multirun() -> bool:
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN


def exit_on_bad_input(
    task: Callable[..., Result], on_rejected: Callable[..., None] | None = None
) -> Callable[..., Result | None]:
    """Run ``task``; bad input (a CellsegError, also when wrapped) is logged as one line and exits 2.

    In a multirun, ``on_rejected(error, *args)`` records a refused job instead and the sweep goes on.
    """

    @functools.wraps(task)
    def wrapper(*args: object, **kwargs: object) -> Result | None:
        try:
            return task(*args, **kwargs)
        except Exception as error:
            bad_input = find_cellseg_error(error)
            if bad_input is None or os.environ.get("HYDRA_FULL_ERROR") == "1":
                raise  # a bug, or a developer asking for the traceback
            log.error("cellseg: error: %s", bad_input)  # on the console and in the run's log file
            if on_rejected is not None and _in_multirun():
                on_rejected(bad_input, *args, **kwargs)
                return None
            sys.exit(BAD_INPUT)

    return wrapper


def claim_output_folder(job: DictConfig, args: Sequence[str], multirun: bool) -> tuple[Path, list[str]]:
    """Create the run's (or sweep's) folder before Hydra writes into it; returns it and the overrides
    that point Hydra there.

    A time-stamped default that another process took first gets a new name; a folder the user named
    must not hold another run's results, unless ``sweep.resume`` names it to resume that sweep.
    """
    key = "hydra.sweep.dir" if multirun else "hydra.run.dir"
    path = Path(str(OmegaConf.select(job, key))).absolute()
    resume = OmegaConf.select(job, "sweep.resume", default=None)
    if resume is not None:
        if not multirun:
            raise ConfigError("sweep.resume resumes a multirun: add -m and the sweep's overrides.")
        return _resume_sweep(
            Path(str(resume)).expanduser().absolute(),
            path if sets_key(args, key) else None,
            args,
            str(OmegaConf.select(job, "hydra.sweeper._target_")),
        )
    if sets_key(args, key):
        held = sweep_entries(path) if multirun else run_entries(path)
        path = claim_given_folder(path, key, held)
    else:
        path = claim_new_folder(path)
    return path, [f'{key}="{path}"']


def _resume_sweep(
    sweep_dir: Path, given: Path | None, args: Sequence[str], sweeper: str
) -> tuple[Path, list[str]]:
    """Plan the resumed sweep (see :mod:`cellseg.sweep_resume`) and point Hydra at its folder."""
    if given is not None and given != sweep_dir:
        raise ConfigError(
            f"sweep.resume='{sweep_dir}' and hydra.sweep.dir='{given}' disagree; give one of them."
        )
    if sweeper == BASIC_SWEEPER:
        plan = apply_plan(sweep_dir, plan_resume(sweep_dir, sweep_jobs(args)))
        print(f"cellseg: resuming sweep {sweep_dir}: {describe_plan(plan)}")
    elif sweeper == OPTUNA_SWEEPER:
        check_same_search(sweep_dir, args)  # the study, in the folder, says which trials to run again
        apply_plan(sweep_dir, plan_resume_folders(sweep_dir))
        print(f"cellseg: resuming the Optuna search in {sweep_dir}")
    else:
        raise ConfigError(
            f"sweep.resume resumes sweeps of Hydra's basic sweeper and of hydra/sweeper=optuna, not {sweeper}."
        )
    return sweep_dir, [f'hydra.sweep.dir="{sweep_dir}"', f"hydra.sweep.subdir='{RESUMED_SUBDIR}'"]


def _launched_as_rank() -> bool:
    """A process started by a DDP launcher to join a run that its rank-0 process already set up."""
    return "LOCAL_RANK" in os.environ


def report_sweep(sweep_dir: Path) -> int:
    """Print one line counting the sweep's jobs by status; the exit status: 1 when any did not complete."""
    statuses: Counter[str] = Counter()
    for job in sorted(p for p in sweep_dir.iterdir() if (p / ".hydra").is_dir()):
        try:
            statuses[run_status(json.loads((job / "metrics.json").read_text()))] += 1
        except (OSError, ValueError):
            statuses["stopped before it started"] += 1
    failed = sum(n for status, n in statuses.items() if status not in FINAL_STATUSES)
    counts = ", ".join(f"{n} {status}" for status, n in sorted(statuses.items()))
    print(
        f"cellseg: sweep {sweep_dir}: {sum(statuses.values())} job(s): {counts or 'none ran'}"
        + (f"; {failed} did not complete (see each job's metrics.json and train.log)" if failed else "")
    )
    return FAILED_JOBS if failed else 0


def run_command(
    config_name: str,
    hydra_main: Callable[[], object],
    job_checks: Sequence[Callable[[DictConfig], None]] = (),
    new_folder: bool = False,
) -> None:
    """Check the command line against the ``config_name`` primary config, then hand over to Hydra.

    ``job_checks`` run on the composed config of the (first) job, before Hydra creates any folder.
    ``new_folder``: the command's run (or sweep) folder is created here first, exclusively; a single run
    refused by the command's own checks leaves no folder, a sweep ends with a count of failed jobs.
    """
    # Lightning 2.6 on torch >= 2.10 warns about its own use of a deprecated pytree API on every run.
    warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\)")
    args = sys.argv[1:]
    multirun = is_multirun(args)
    claimed: Path | None = None
    try:
        job = check_command_line(args, config_name=config_name, job_checks=job_checks)
        if new_folder and job is not None and not _launched_as_rank():
            claimed, overrides = claim_output_folder(job, args, multirun)
            sys.argv.extend(overrides)
    except CellsegError as error:
        print(f"cellseg: error: {error}", file=sys.stderr)
        sys.exit(BAD_INPUT)
    status = 0
    try:
        hydra_main()
    except SystemExit as stop:
        if claimed is not None and not multirun and stop.code == BAD_INPUT:
            remove_unstarted_run(claimed)
        raise
    finally:  # a sweep is counted also when Hydra ends it with an error
        if claimed is not None and multirun:
            finish_resume(claimed)
            status = report_sweep(claimed)
    if status:
        sys.exit(status)
