"""Resumable multiruns: completed jobs are skipped untouched, a killed one resumes, the rest run."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import pytest
import yaml

from cellseg.errors import ConfigError
from cellseg.sweep_resume import (
    PlannedJob,
    apply_plan,
    check_same_search,
    job_subdir,
    plan_resume,
    plan_resume_folders,
    planned_job,
    sweep_jobs,
)
from tests.conftest import FAST, REPO_ROOT, run_cli

SWEEP = [
    "-m",
    *(o for o in FAST if not o.startswith("trainer.max_epochs")),
    "trainer.max_epochs=2",
    "test=false",
    "logger=csv",
    "seed=1,2,3",
    "+callbacks.kill._target_=tests.helpers.KillAtBatch",
    "+callbacks.kill.epoch=1",
    "+callbacks.kill.batch=1",
    "+callbacks.kill.job='1'",
]


def _files(folder: Path) -> dict[Path, bytes]:
    return {p.relative_to(folder): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


@pytest.mark.slow
def test_a_killed_sweep_resumes_without_doing_anything_twice(tmp_path):
    sweep = tmp_path / "sweep"
    env = {"PYTHONPATH": os.pathsep.join([str(REPO_ROOT), os.environ.get("PYTHONPATH", "")])}
    first = run_cli([*SWEEP, f"hydra.sweep.dir={sweep}"], cwd=tmp_path, env={**env, "CELLSEG_TEST_KILL": "1"})
    assert first.returncode == -signal.SIGKILL  # the whole sweep died with job 1, in its second epoch
    assert sorted(p.name for p in sweep.iterdir() if p.name.isdigit()) == ["0", "1"]
    completed, killed = _files(sweep / "0"), _files(sweep / "1")

    resumed = run_cli([*SWEEP, f"sweep.resume={sweep}"], cwd=tmp_path, env=env)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert (
        f"resuming sweep {sweep}: 1 completed job(s) skipped, 1 resumed from their last.ckpt, 1 run from the start"
        in resumed.stdout
    )
    assert f"cellseg: sweep {sweep}: 3 job(s): 3 completed" in resumed.stdout
    assert _files(sweep / "0") == completed  # not a byte of the completed job rewritten
    (superseded,) = (sweep / ".superseded").iterdir()
    assert superseded.name.startswith("1_") and _files(superseded) == killed
    job1 = json.loads((sweep / "1" / "metrics.json").read_text())
    assert job1["status"] == "completed" and job1["seed"] == 2
    assert job1["resumed_from"] == str(superseded / "checkpoints" / "last.ckpt")
    assert [e["epoch"] for e in job1["history"]] == [0, 1]
    job2 = json.loads((sweep / "2" / "metrics.json").read_text())
    assert job2["status"] == "completed" and job2["seed"] == 3 and job2["resumed_from"] is None
    assert sorted(p.name for p in sweep.iterdir()) == [".superseded", "0", "1", "2", "multirun.yaml"]


def _job(folder: Path, overrides: list[str], status: str | None, last: bool = False) -> None:
    (folder / ".hydra").mkdir(parents=True)
    (folder / ".hydra" / "overrides.yaml").write_text("".join(f"- {o}\n" for o in overrides))
    if status is not None:
        (folder / "metrics.json").write_text(json.dumps({"status": status}))
    if last:
        (folder / "checkpoints").mkdir()
        (folder / "checkpoints" / "last.ckpt").write_bytes(b"")


def test_each_job_is_planned_from_what_its_folder_holds(tmp_path):
    jobs = sweep_jobs(["-m", "seed=1,2,3,4,5", "optimizer.lr=1e-3", "hydra.sweep.dir=x"])
    assert jobs[0] == ["seed=1", "optimizer.lr=0.001"]
    (tmp_path / "multirun.yaml").write_text("{}")
    _job(tmp_path / "0", jobs[0], "completed")
    _job(tmp_path / "1", jobs[1], "failed", last=True)
    _job(tmp_path / "2", jobs[2], "rejected")
    _job(tmp_path / "3", jobs[3], None)
    plan = plan_resume(tmp_path, jobs)
    assert [plan[n].action for n in range(5)] == ["skip", "resume", "run", "run", "run"]
    assert plan[1] == PlannedJob("resume", str(tmp_path / "1" / "checkpoints" / "last.ckpt"), "failed")


def test_a_command_line_that_is_not_the_sweeps_is_refused(tmp_path):
    (tmp_path / "multirun.yaml").write_text("{}")
    _job(tmp_path / "0", ["seed=1"], "completed")
    with pytest.raises(ConfigError, match=r"job 0 of .* ran seed=1, but this command line's job 0 is seed=7"):
        plan_resume(tmp_path, sweep_jobs(["-m", "seed=7,8"]))
    with pytest.raises(ConfigError, match="is not a multirun folder"):
        plan_resume(tmp_path / "0", [["seed=1"]])


def test_a_resumed_search_plans_only_the_jobs_that_did_not_end(tmp_path):
    """An Optuna search's study runs its interrupted trials again; jobs that ended are told trials."""
    (tmp_path / "multirun.yaml").write_text("{}")
    for number, status in enumerate(["completed", "pruned", "failed", "rejected", "interrupted"]):
        _job(tmp_path / str(number), [f"optimizer.lr={number}"], status, last=True)
    _job(tmp_path / "5", ["optimizer.lr=5"], None)
    plan = plan_resume_folders(tmp_path)
    assert plan == {
        4: PlannedJob("resume", str(tmp_path / "4" / "checkpoints" / "last.ckpt"), "interrupted"),
        5: PlannedJob("run", reason="no results"),
    }
    apply_plan(tmp_path, plan)
    assert (
        planned_job(tmp_path, tmp_path / "4").action == "resume"
        and planned_job(tmp_path, tmp_path / "0") is None
    )
    assert job_subdir(str(tmp_path), 4) == "4"


def test_a_search_resumes_only_with_its_own_command_line(tmp_path):
    (tmp_path / "multirun.yaml").write_text(
        yaml.safe_dump({"hydra": {"overrides": {"task": ["optimizer.lr=interval(1e-4,1e-2)", "seed=1"]}}})
    )
    check_same_search(
        tmp_path, ["-m", "optimizer.lr=interval(1e-4,1e-2)", "seed=1", f"sweep.resume={tmp_path}"]
    )
    with pytest.raises(ConfigError, match=r"was searched with optimizer\.lr=interval"):
        check_same_search(tmp_path, ["-m", "optimizer.lr=interval(1e-3,1e-1)", "seed=1"])
