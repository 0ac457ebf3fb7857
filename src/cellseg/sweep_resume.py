"""Resuming a multirun: ``python -m cellseg.train -m <the sweep's overrides> sweep.resume=<its folder>``.

Before Hydra starts, every job of the command line is matched with the job folder of the same number
and given one action: ``skip`` (it completed), ``resume`` (killed, interrupted or failed after writing
a ``last.ckpt``: it goes on from there) or ``run`` (never started, refused, or died before its first
checkpoint). A job that is resumed or rerun keeps its old folder, renamed to
``.superseded/<number>_<date>_<time>/``, untouched. The plan is written to the sweep folder; Hydra then
runs the sweep as usual, with each skipped job pointed at a scratch folder (``.skipped/``, removed at
the end) so that no file of a completed job is rewritten, and each job reads its action from the plan.

The same actions serve a job that a cluster requeued after pre-empting it (:func:`requeued_job`: it
goes on in its own folder) and an Optuna search that is resumed (:func:`plan_resume_folders`: its
trials, not the command line, say which jobs there are).
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import yaml
from omegaconf import OmegaConf

from cellseg.errors import ConfigError
from cellseg.runs import run_status
from cellseg.utils.io import write_json_atomic
from cellseg.utils.processes import liveness

PLAN_FILE = ".cellseg-resume.json"
SKIPPED_DIR = ".skipped"
SUPERSEDED_DIR = ".superseded"
#: What a job's overrides may differ in between the first sweep and its resumption.
RESUME_KEYS = ("sweep.resume", "sweep.requeued")
#: Statuses a job ends in for good: it is not run again (an Optuna pruner stopped a ``pruned`` one).
FINAL_STATUSES = ("completed", "pruned")
#: Hydra's job folder in a resumed sweep: the plan's scratch folder for a job it skips.
RESUMED_SUBDIR = "${cellseg_job_subdir:${hydra.sweep.dir},${hydra.job.num}}"


@dataclass(frozen=True)
class PlannedJob:
    """What one job of the resumed sweep does: ``skip``, ``resume`` (from ``ckpt_path``) or ``run``."""

    action: str
    ckpt_path: str | None = None
    reason: str = ""


#: The sweepers whose jobs the plan can follow: Hydra's basic one (the command line lists the jobs) and
#: cellseg's Optuna sweeper (its study lists the trials; interrupted ones are run again).
BASIC_SWEEPER = "hydra._internal.core_plugins.basic_sweeper.BasicSweeper"
OPTUNA_SWEEPER = "hydra_plugins.cellseg_plugins.optuna_sweeper.OptunaSweeper"


def task_overrides(args: Sequence[str]) -> list[str]:
    """The command line's overrides of the job config (not Hydra's own), as written."""
    from hydra._internal.utils import get_args_parser
    from hydra.core.override_parser.overrides_parser import OverridesParser

    overrides = OverridesParser.create().parse_overrides(get_args_parser().parse_args(list(args)).overrides)
    return [o.input_line for o in overrides if not o.key_or_group.startswith("hydra")]


def check_same_search(sweep_dir: Path, args: Sequence[str]) -> None:
    """A search (whose jobs the command line does not list) resumes only with its own command line."""
    _check_sweep_folder(sweep_dir)
    try:
        recorded = yaml.safe_load((sweep_dir / "multirun.yaml").read_text())["hydra"]["overrides"]["task"]
    except (OSError, yaml.YAMLError, KeyError, TypeError):
        recorded = None
    if recorded is None or _comparable(map(str, recorded)) != _comparable(task_overrides(args)):
        raise ConfigError(
            f"sweep.resume: '{sweep_dir}' was searched with {' '.join(map(str, recorded or [])) or 'other overrides'}, "
            f"not {' '.join(sorted(_comparable(task_overrides(args))))}; give the search's own overrides."
        )


def sweep_jobs(args: Sequence[str]) -> list[list[str]]:
    """The overrides of each job the command line sweeps, in Hydra's job order (the basic sweeper's)."""
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
    from hydra._internal.utils import get_args_parser
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parsed = get_args_parser().parse_args(list(args))
    overrides = OverridesParser.create().parse_overrides(parsed.overrides)
    task = [o for o in overrides if not o.key_or_group.startswith("hydra")]
    return [job for batch in BasicSweeper.split_arguments(task, None) for job in batch]


def _comparable(overrides: Iterable[str]) -> set[str]:
    return {o for o in overrides if o.lstrip("+~").split("=", 1)[0] not in RESUME_KEYS}


def _recorded_overrides(job_dir: Path) -> list[str] | None:
    try:
        content = yaml.safe_load((job_dir / ".hydra" / "overrides.yaml").read_text())
    except (OSError, yaml.YAMLError):
        return None
    return [str(o) for o in content] if isinstance(content, list) else None


def _job_action(job_dir: Path, previous_attempt_over: bool = False) -> PlannedJob:
    """What a job folder left by the first sweep needs.

    ``previous_attempt_over``: the cluster requeued this job, so a "running" status is a stale one
    (the attempt was stopped, possibly on another node whose processes cannot be checked from here).
    """
    last = job_dir / "checkpoints" / "last.ckpt"
    try:
        summary = json.loads((job_dir / "metrics.json").read_text())
    except (OSError, ValueError):
        summary = None
    if summary is None:
        if last.is_file():
            return PlannedJob("resume", str(last), "stopped before writing metrics.json")
        return PlannedJob("run", reason="never started" if not job_dir.exists() else "no results")
    status = run_status(summary)
    if status in FINAL_STATUSES:
        return PlannedJob("skip", reason=status)
    if status == "running" and not previous_attempt_over:
        where = summary.get("process") or {}
        state = "is still running" if liveness(where) == "alive" else "may still be running (another host)"
        raise ConfigError(
            f"sweep.resume: job {job_dir.name} ({job_dir}) {state} (pid {where.get('pid')} on "
            f"{where.get('host')}); wait for it or stop it before resuming the sweep."
        )
    if status != "rejected" and last.is_file():
        return PlannedJob("resume", str(last), status)
    return PlannedJob("run", reason=status)


def plan_resume(sweep_dir: Path, jobs: Sequence[Sequence[str]]) -> dict[int, PlannedJob]:
    """Each job's action; a ConfigError when the folder is not a sweep of these jobs."""
    _check_sweep_folder(sweep_dir)
    numbered = [p for p in sweep_dir.iterdir() if p.is_dir() and p.name.isdigit()]
    extra = sorted(int(p.name) for p in numbered if int(p.name) >= len(jobs))
    if extra:
        raise ConfigError(
            f"sweep.resume: '{sweep_dir}' holds job(s) {extra}, but this command line sweeps only "
            f"{len(jobs)} job(s); give the sweep's own overrides."
        )
    plan = {}
    for number, overrides in enumerate(jobs):
        job_dir = sweep_dir / str(number)
        recorded = _recorded_overrides(job_dir)
        if recorded is not None and _comparable(recorded) != _comparable(overrides):
            raise ConfigError(
                f"sweep.resume: job {number} of '{sweep_dir}' ran {' '.join(sorted(_comparable(recorded)))}, "
                f"but this command line's job {number} is {' '.join(sorted(_comparable(overrides)))}; give "
                "the sweep's overrides in their original order."
            )
        plan[number] = _job_action(job_dir)
    return plan


def plan_resume_folders(sweep_dir: Path) -> dict[int, PlannedJob]:
    """The action of each job that did not end, for a sweep whose jobs its command line does not list
    (an Optuna search: its study runs the interrupted trials again, and their jobs read this plan).
    A job that ended, well or not, is a told trial: it is left as it is."""
    _check_sweep_folder(sweep_dir)
    plan = {}
    for job_dir in sorted(p for p in sweep_dir.iterdir() if p.is_dir() and p.name.isdigit()):
        try:
            status = run_status(json.loads((job_dir / "metrics.json").read_text()))
        except (OSError, ValueError):
            status = None
        if status not in (*FINAL_STATUSES, "failed", "rejected"):
            plan[int(job_dir.name)] = _job_action(job_dir)
    return plan


def _check_sweep_folder(sweep_dir: Path) -> None:
    if not (sweep_dir / "multirun.yaml").is_file():
        raise ConfigError(
            f"sweep.resume='{sweep_dir}' is not a multirun folder (no multirun.yaml); give the folder "
            "a python -m cellseg.train -m ... wrote, e.g. outputs/train/multirun/<date>_<time>."
        )


def requeued_job(run_dir: str | Path, planned: PlannedJob | None) -> PlannedJob:
    """What a job does that a cluster runs again, in the same folder, after pre-empting it (every DDP
    rank finds the same, from files only the stopped attempt wrote): go on from its own last.ckpt, else
    as the resumed sweep planned it, else start again."""
    if planned is not None and planned.action == "skip":
        return planned
    job = _job_action(Path(run_dir), previous_attempt_over=True)
    return planned if job.action == "run" and planned is not None else job


def kept_results(run_dir: str | Path) -> dict[str, Any]:
    """The metrics.json of a completed job that is not run again (a resumed sweep runs it in a scratch
    folder, ``.skipped/<number>``, that points at its own)."""
    run_dir = Path(run_dir)
    folder = run_dir.parent.parent / run_dir.name if run_dir.parent.name == SKIPPED_DIR else run_dir
    return json.loads((folder / "metrics.json").read_text())


def apply_plan(sweep_dir: Path, plan: dict[int, PlannedJob]) -> dict[int, PlannedJob]:
    """Move the folders of jobs to resume or rerun aside and write the plan for the jobs to read.

    A resumed job's checkpoint path then points into its moved folder.
    """
    stamp = time.strftime("%Y-%m-%d_%H-%M-%S")
    applied = {}
    for number, job in plan.items():
        job_dir = sweep_dir / str(number)
        if job.action != "skip" and job_dir.exists():
            moved = sweep_dir / SUPERSEDED_DIR / f"{number}_{stamp}"
            moved.parent.mkdir(exist_ok=True)
            job_dir.rename(moved)
            if job.ckpt_path is not None:
                job = PlannedJob(
                    job.action, str(moved / Path(job.ckpt_path).relative_to(job_dir)), job.reason
                )
        applied[number] = job
    write_json_atomic(sweep_dir / PLAN_FILE, {str(n): asdict(j) for n, j in applied.items()})
    return applied


def job_subdir(sweep_dir: str, number: Any) -> str:
    """Hydra's job folder inside the sweep folder: a scratch one for a job the plan skips."""
    job = _read_plan(Path(sweep_dir)).get(int(number))
    return f"{SKIPPED_DIR}/{number}" if job is not None and job.action == "skip" else str(number)


def _read_plan(sweep_dir: Path) -> dict[int, PlannedJob]:
    try:
        content = json.loads((sweep_dir / PLAN_FILE).read_text())
    except (OSError, ValueError):
        return {}
    return {int(n): PlannedJob(**job) for n, job in content.items()}


def planned_job(sweep_dir: str | Path, run_dir: str | Path) -> PlannedJob | None:
    """The action of the job running in ``run_dir`` in the resumed sweep (None when not resuming).

    Found from the job's folder, not Hydra's job number, so that DDP ranks started for the job find it too.
    """
    sweep_dir, run_dir = Path(sweep_dir).absolute(), Path(run_dir).absolute()
    if run_dir.parent == sweep_dir / SKIPPED_DIR:
        return PlannedJob("skip", reason="completed")
    if run_dir.parent != sweep_dir or not run_dir.name.isdigit():
        return None
    return _read_plan(sweep_dir).get(int(run_dir.name))


def finish_resume(sweep_dir: Path) -> None:
    """Remove the scratch folders of skipped jobs and the plan once the resumed sweep has run."""
    shutil.rmtree(sweep_dir / SKIPPED_DIR, ignore_errors=True)
    (sweep_dir / PLAN_FILE).unlink(missing_ok=True)


def describe_plan(plan: dict[int, PlannedJob]) -> str:
    """One line: how many jobs are skipped, resumed and run."""
    counts = {action: sum(j.action == action for j in plan.values()) for action in ("skip", "resume", "run")}
    return (
        f"{counts['skip']} completed job(s) skipped, {counts['resume']} resumed from their last.ckpt, "
        f"{counts['run']} run from the start"
    )


# Used by hydra.sweep.subdir when a sweep is resumed; registered on import, before Hydra composes anything.
OmegaConf.register_new_resolver("cellseg_job_subdir", job_subdir, replace=True)
