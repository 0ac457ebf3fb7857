"""Failures contained: a job refused by its checks is recorded, the sweep's other jobs run, the end says so."""

from __future__ import annotations

import json

from cellseg.comparison import read_runs
from tests.conftest import FAST, run_cli


def test_a_rejected_job_is_recorded_and_the_others_run(tmp_path):
    sweep = tmp_path / "sweep"
    result = run_cli(
        ["-m", *FAST, "test=false", "optimizer.lr=-1,1e-3", f"hydra.sweep.dir={sweep}"], cwd=tmp_path
    )
    assert result.returncode == 1, result.stderr[-3000:]
    assert "Traceback" not in result.stderr
    rejected = json.loads((sweep / "0" / "metrics.json").read_text())
    assert (
        rejected["status"] == "rejected"
        and "optimizer.lr=-1: expected a positive number" in rejected["error"]
    )
    assert "optimizer.lr=-1" in rejected["overrides"]
    assert json.loads((sweep / "1" / "metrics.json").read_text())["status"] == "completed"
    last_line = result.stdout.strip().splitlines()[-1]
    assert last_line.startswith(
        f"cellseg: sweep {sweep}: 2 job(s): 1 completed, 1 rejected; 1 did not complete"
    )
    # The comparison lists the refused job with its reason instead of dropping it.
    problems = {
        record.path.name: record.problem for record in read_runs([sweep / "0", sweep / "1"], progress=False)
    }
    assert problems["0"].startswith("rejected: optimizer.lr=-1") and problems["1"] is None


def test_a_sweep_folder_holding_an_earlier_sweep_is_refused_before_any_job(tmp_path):
    sweep = tmp_path / "sweep"
    (sweep / "0" / ".hydra").mkdir(parents=True)
    (sweep / "0" / "metrics.json").write_text("{}")
    (sweep / "multirun.yaml").write_text("hydra: {}\n")
    result = run_cli(["-m", *FAST, "seed=1,2", f"hydra.sweep.dir={sweep}"], cwd=tmp_path)
    assert result.returncode == 2
    assert "already holds results of another run (multirun.yaml, 0)" in result.stderr
    assert sorted(p.name for p in sweep.iterdir()) == ["0", "multirun.yaml"]
    assert (sweep / "0" / "metrics.json").read_text() == "{}"
