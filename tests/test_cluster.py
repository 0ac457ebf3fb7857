"""hydra/launcher=slurm through submitit: what it asks SLURM for, and a pre-empted job requeued to go on
from its last.ckpt (on this machine, through submitit's local executor: the same signal, checkpoint and
requeue path as on a cluster)."""

from __future__ import annotations

import csv
import json
import os
import stat
from pathlib import Path

import pytest
import torch

from cellseg.cluster import job_overrides
from cellseg.config import check_cluster_trainer, check_command_line
from cellseg.errors import ConfigError
from cellseg.sweep_resume import PlannedJob, requeued_job
from cellseg.utils.csv_logger import ContinuingCSVLogger
from tests.conftest import FAST, REPO_ROOT, compose_config, run_cli

ENV = {"PYTHONPATH": os.pathsep.join([str(REPO_ROOT), os.environ.get("PYTHONPATH", "")])}


def _executable(path: Path, text: str) -> None:
    path.write_text(text)
    path.chmod(path.stat().st_mode | stat.S_IXUSR)


def test_the_slurm_launcher_asks_for_one_task_per_gpu_and_a_signal_before_the_kill(tmp_path):
    """A stand-in ``sbatch`` keeps the script submitit wrote and refuses it (there is no cluster here)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    _executable(bin_dir / "srun", "#!/bin/sh\nexit 0\n")
    _executable(
        bin_dir / "sbatch", f'#!/bin/sh\ncp "$1" {tmp_path}/submitted.sh\necho "no cluster" >&2\nexit 1\n'
    )
    result = run_cli(
        [
            "-m",
            *FAST,
            "hydra/launcher=slurm",
            "trainer=slurm",
            "hydra.launcher.partition=gpu",
            "hydra.launcher.gpus_per_node=4",
            "hydra.launcher.nodes=2",
            "seed=1,2",
            f"hydra.sweep.dir={tmp_path / 'sweep'}",
        ],
        cwd=tmp_path,
        env={"PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"},
    )
    assert result.returncode != 0  # sbatch refused, as a cluster without that partition would
    script = (tmp_path / "submitted.sh").read_text()
    for line in [
        "#SBATCH --partition=gpu",
        "#SBATCH --nodes=2",
        "#SBATCH --gpus-per-node=4",
        "#SBATCH --ntasks-per-node=4",  # one DDP rank per GPU
        "#SBATCH --cpus-per-gpu=8",
        "#SBATCH --time=240",
        "#SBATCH --signal=USR2@120",  # submitit's pre-emption signal, before the kill
        "#SBATCH --array=0-1%2",  # the sweep's two jobs, both at once
    ]:
        assert line in script, f"{line} not in:\n{script}"


def test_inside_a_slurm_job_the_trainer_uses_every_gpu_of_every_node(monkeypatch):
    monkeypatch.setenv("SLURM_JOB_NUM_NODES", "2")
    trainer = compose_config(["trainer=slurm"]).trainer
    assert (trainer.strategy, trainer.devices, trainer.num_nodes) == ("ddp", "auto", 2)
    environment = trainer.plugins[-1]
    assert environment._target_.endswith("SLURMEnvironment") and environment.auto_requeue is False


def test_several_gpus_per_job_without_ddp_are_refused_before_anything_is_queued():
    with pytest.raises(ConfigError, match=r"starts 4 task\(s\) on each of 1 node\(s\).*add trainer=slurm"):
        check_command_line(
            ["-m", "hydra/launcher=slurm", "hydra.launcher.gpus_per_node=4"],
            job_checks=[check_cluster_trainer],
        )
    with pytest.raises(ConfigError, match="on each of 2 node"):
        check_command_line(
            ["-m", "hydra/launcher=slurm", "hydra.launcher.nodes=2"], job_checks=[check_cluster_trainer]
        )
    for args in (
        ["hydra/launcher=slurm", "trainer=slurm", "hydra.launcher.gpus_per_node=4"],
        ["hydra/launcher=slurm"],
    ):
        assert check_command_line(["-m", *args], job_checks=[check_cluster_trainer]) is not None


def test_a_job_knows_it_runs_again_after_a_signal_or_a_requeue_by_slurm_itself(monkeypatch):
    monkeypatch.delenv("SLURM_RESTART_COUNT", raising=False)
    assert job_overrides(["seed=1"], requeued=False) == ["seed=1"]
    assert job_overrides(["seed=1"], requeued=True) == ["seed=1", "sweep.requeued=true"]
    monkeypatch.setenv("SLURM_RESTART_COUNT", "2")  # a node failure: SLURM reran the first submission
    assert job_overrides(["seed=1", "sweep.requeued=true"], requeued=False) == [
        "seed=1",
        "sweep.requeued=true",
    ]
    monkeypatch.setenv("SLURM_RESTART_COUNT", "0")
    assert job_overrides(["seed=1"], requeued=False) == ["seed=1"]


def test_a_requeued_job_goes_on_from_its_own_last_checkpoint(tmp_path):
    job = tmp_path / "3"
    (job / "checkpoints").mkdir(parents=True)
    # "running" on another node: the attempt the cluster stopped, not a live one
    (job / "metrics.json").write_text(json.dumps({"status": "running", "process": {"host": "other-node"}}))
    assert requeued_job(job, None) == PlannedJob("run", reason="running")  # stopped before its first epoch
    earlier = PlannedJob("resume", "/sweep/.superseded/3_x/checkpoints/last.ckpt", "killed")
    assert requeued_job(job, earlier) == earlier  # ... of a job a resumed sweep had resumed
    (job / "checkpoints" / "last.ckpt").write_bytes(b"")
    assert requeued_job(job, earlier) == PlannedJob(
        "resume", str(job / "checkpoints" / "last.ckpt"), "running"
    )
    (job / "metrics.json").write_text(json.dumps({"status": "completed"}))
    assert requeued_job(job, None).action == "skip"


@pytest.mark.slow
def test_a_local_submitit_sweep_requeues_a_preempted_job_which_resumes(tmp_path):
    """Two jobs of the same seed; job 1 gets submitit's pre-emption signal in its second epoch: it is
    requeued, resumes from the last.ckpt in its folder and ends with job 0's weights, bit for bit."""
    sweep = tmp_path / "sweep"
    result = run_cli(
        [
            "-m",
            "hydra/launcher=slurm_local",
            *(o for o in FAST if not o.startswith("trainer.max_epochs")),
            "trainer.max_epochs=2",
            "test=false",
            "logger=csv",
            "trainer.deterministic=true",
            "seed=2,2",
            "+callbacks.preempt._target_=tests.helpers.PreemptAtBatch",
            "+callbacks.preempt.epoch=1",
            "+callbacks.preempt.batch=0",
            "+callbacks.preempt.job='1'",
            f"hydra.sweep.dir={sweep}",
        ],
        cwd=tmp_path,
        env=ENV,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"cellseg: sweep {sweep}: 2 job(s): 2 completed" in result.stdout
    first = json.loads((sweep / "0" / "metrics.json").read_text())
    assert first["resumed_from"] is None and "sweep.requeued=true" not in first["overrides"]
    requeued = json.loads((sweep / "1" / "metrics.json").read_text())
    assert requeued["status"] == "completed" and requeued["seed"] == 2
    assert requeued["resumed_from"] == str(sweep / "1" / "checkpoints" / "last.ckpt")
    assert "sweep.requeued=true" in requeued["overrides"]
    assert [e["epoch"] for e in requeued["history"]] == [0, 1]
    weights = [
        torch.load(sweep / job / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)[
            "state_dict"
        ]
        for job in ("0", "1")
    ]
    assert all(torch.equal(value, weights[1][key]) for key, value in weights[0].items())
    logs = "".join(p.read_text() for p in (sweep / ".submitit").rglob("*_log.*"))
    assert "this job is preempted" in logs and "Requeued job" in logs
    rows = (sweep / "1" / "csv" / "metrics.csv").read_text().splitlines()
    assert {row.split(",", 1)[0] for row in rows[1:]} == {"0", "1"}  # the first attempt's rows kept


def test_the_csv_logger_continues_the_metrics_of_a_run_that_goes_on_in_its_folder(tmp_path):
    first = ContinuingCSVLogger(tmp_path, name="", version="csv")
    first.log_metrics({"val/dice": 0.5}, step=1)
    first.save()
    second = ContinuingCSVLogger(tmp_path, name="", version="csv")  # the requeued attempt
    second.log_metrics({"val/dice": 0.6, "train/loss": 0.3}, step=2)
    second.save()
    with (tmp_path / "csv" / "metrics.csv").open() as file:
        rows = list(csv.DictReader(file))
    assert [(r["step"], r["val/dice"], r["train/loss"]) for r in rows] == [
        ("1", "0.5", ""),
        ("2", "0.6", "0.3"),
    ]
