"""Nothing lost: every run gets a folder of its own, and no command touches another run's files."""

from __future__ import annotations

import json
import multiprocessing
import subprocess
import sys
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from cellseg.errors import RunExistsError
from cellseg.inference.writers import check_output_folder
from cellseg.runs import claim_given_folder, claim_new_folder, remove_unstarted_run
from tests.conftest import FAST, run_cli


def _claim(path: str, queue) -> None:
    queue.put(str(claim_new_folder(path)))


def test_processes_racing_for_one_folder_each_get_their_own(tmp_path):
    context = multiprocessing.get_context("fork")  # started at once: they race for the name
    queue = context.Queue()
    workers = [context.Process(target=_claim, args=(str(tmp_path / "run"), queue)) for _ in range(6)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(60)
    claimed = sorted(queue.get(timeout=5) for _ in workers)
    assert len(set(claimed)) == 6
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run", *(f"run_{n}" for n in range(2, 7))]


def test_a_named_folder_holding_a_run_is_refused_and_an_empty_one_used(tmp_path):
    with pytest.raises(
        RunExistsError, match=r"hydra.run.dir='.*' already holds results of another run \(metrics"
    ):
        claim_given_folder(tmp_path, "hydra.run.dir", ["metrics.json", ".hydra"])
    assert claim_given_folder(tmp_path / "new", "hydra.run.dir", []).is_dir()


def test_only_a_folder_holding_nothing_but_hydras_files_is_removed(tmp_path):
    unstarted = tmp_path / "unstarted"
    (unstarted / ".hydra").mkdir(parents=True)
    (unstarted / "train.log").write_text("cellseg: error: ...")
    assert remove_unstarted_run(unstarted) and not unstarted.exists()
    started = tmp_path / "started"
    (started / ".hydra").mkdir(parents=True)
    (started / "metrics.json").write_text("{}")
    assert not remove_unstarted_run(started) and (started / "metrics.json").is_file()


def test_a_run_folder_is_never_an_output_folder_even_with_overwrite(tmp_path):
    (tmp_path / "checkpoints").mkdir()
    (tmp_path / "metrics.json").write_text("{}")
    with pytest.raises(RunExistsError, match=r"is a training run's folder .*whatever overwrite says"):
        check_output_folder(tmp_path, overwrite=True)


def _start(args: list[str], cwd: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "cellseg.train", *args],
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


@pytest.mark.slow
def test_two_runs_started_together_get_two_folders_with_their_own_results(tmp_path):
    # Every time-stamped folder of the next two minutes is taken already: both runs must claim new
    # names, and when they start in the same second they race for the same one.
    task = tmp_path / "outputs" / "together"
    now = datetime.now()
    for second in range(120):
        (task / (now + timedelta(seconds=second)).strftime("%Y-%m-%d_%H-%M-%S")).mkdir(parents=True)
    common = [*FAST, "test=false", "task_name=together", "logger=csv"]
    runs = [_start([*common, f"seed={seed}"], tmp_path) for seed in (1, 2)]
    for run in runs:
        _, stderr = run.communicate(timeout=300)
        assert run.returncode == 0, stderr.decode()[-3000:]
    folders = sorted(p for p in task.iterdir() if (p / "metrics.json").is_file())
    assert len(folders) == 2 and all(p.name.endswith("_2") or p.name.endswith("_3") for p in folders)
    seeds = set()
    for folder in folders:
        metrics = json.loads((folder / "metrics.json").read_text())
        assert metrics["run_dir"] == str(folder.resolve()) and metrics["status"] == "completed"
        assert f"seed={metrics['seed']}" in metrics["overrides"]
        seeds.add(metrics["seed"])
    assert seeds == {1, 2}


def test_a_run_pointed_at_an_existing_run_touches_none_of_its_files(tmp_path):
    run_dir = tmp_path / "run"
    for name, content in {
        ".hydra/config.yaml": "seed: 1\n",
        ".hydra/overrides.yaml": "- seed=1\n",
        "train.log": "epoch 1/1: ...\n",
        "metrics.json": '{"status": "completed"}',
        "checkpoints/last.ckpt": "weights",
    }.items():
        (run_dir / name).parent.mkdir(parents=True, exist_ok=True)
        (run_dir / name).write_text(content)
    before = {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in run_dir.rglob("*") if p.is_file()}
    second = run_cli([*FAST, "test=false", "seed=7", f"hydra.run.dir={run_dir}"], cwd=tmp_path)
    assert second.returncode == 2
    assert "already holds results of another run" in second.stderr and "Traceback" not in second.stderr
    assert {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in run_dir.rglob("*") if p.is_file()} == before


def test_a_run_refused_by_its_checks_leaves_no_folder(tmp_path):
    result = run_cli([*FAST, "monitor=val/dcie", "task_name=refused"], cwd=tmp_path)
    assert result.returncode == 2, result.stderr[-3000:]
    errors = [line for line in (result.stdout + result.stderr).splitlines() if "cellseg: error:" in line]
    assert len(errors) == 1 and "monitor=val/dcie" in errors[0] and "did you mean val/dice?" in errors[0]
    assert "Traceback" not in result.stderr
    assert list((tmp_path / "outputs" / "refused").iterdir()) == []
