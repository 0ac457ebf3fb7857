"""A SIGKILLed run cannot mark itself: readers tell it from a live one by the process it recorded."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from cellseg.comparison import read_runs
from cellseg.runs import run_status
from cellseg.utils.processes import liveness, process_identity
from tests.conftest import FAST, REPO_ROOT


def _finished_process_identity() -> dict:
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(0.2)"])
    identity = process_identity(child.pid)
    child.wait()
    return identity


def test_a_live_process_is_alive_and_a_finished_one_is_gone():
    assert liveness(process_identity()) == "alive"
    assert liveness(_finished_process_identity()) == "gone"


@pytest.mark.skipif(not Path("/proc/self/stat").is_file(), reason="needs Linux /proc")
def test_an_exited_child_not_yet_reaped_is_gone():
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    identity = process_identity(child.pid)
    deadline = time.monotonic() + 60
    while Path(f"/proc/{child.pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z":
        assert time.monotonic() < deadline, "the child never exited"
        time.sleep(0.05)
    assert liveness(identity) == "gone"  # os.kill(pid, 0) still succeeds on a zombie
    child.wait()


def test_a_reused_pid_and_another_host_are_not_taken_for_the_writer():
    reused = {**process_identity(), "start_ticks": -1}  # this pid, but not the process that wrote
    assert liveness(reused) == "gone"
    assert liveness({**process_identity(), "host": "another-node"}) == "unknown"
    assert liveness(None) == "unknown" and liveness({"host": process_identity()["host"]}) == "unknown"


def test_running_status_becomes_killed_only_when_the_writer_is_gone():
    assert run_status({"status": "running", "process": _finished_process_identity()}) == "killed"
    assert run_status({"status": "running", "process": process_identity()}) == "running"
    assert run_status({"status": "running"}) == "running"  # an older cellseg: no process recorded
    assert run_status({"status": "completed", "process": _finished_process_identity()}) == "completed"


def test_a_sigkilled_training_run_is_reported_killed_by_compare(tmp_path):
    run_dir = tmp_path / "run"
    args = [*FAST, "trainer.max_epochs=1000", "test=false", f"hydra.run.dir={run_dir}"]
    child = subprocess.Popen(
        [sys.executable, "-m", "cellseg.train", *args],
        cwd=REPO_ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, "PYTHONWARNINGS": "ignore"},
    )
    metrics = run_dir / "metrics.json"
    deadline = time.monotonic() + 300
    while not (metrics.is_file() and json.loads(metrics.read_text()).get("history")):
        assert child.poll() is None and time.monotonic() < deadline, "the run ended before its first epoch"
        time.sleep(0.5)
    child.send_signal(signal.SIGKILL)
    child.wait()
    summary = json.loads(metrics.read_text())
    assert summary["status"] == "running" and summary["process"]["pid"] == child.pid
    [record] = read_runs([run_dir], progress=False)
    assert record.status == "killed"
    assert f"killed: its process ({child.pid} on" in record.problem and "epoch(s)" in record.problem


def test_how_a_run_that_raised_ended_is_named():
    import optuna

    from cellseg.callbacks.run_summary import exception_status

    assert exception_status(KeyboardInterrupt()) == "interrupted"
    assert exception_status(SystemExit(3)) == "interrupted"  # submitit's exit after a pre-emption signal
    assert exception_status(optuna.TrialPruned("at epoch 2")) == "pruned"
    assert exception_status(RuntimeError("CUDA out of memory")) == "failed"
