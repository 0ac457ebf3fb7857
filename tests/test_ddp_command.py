"""DDP children re-run exactly the current Hydra job, never the whole sweep."""

from __future__ import annotations

import sys

from cellseg.utils.ddp import child_command


def test_multirun_child_runs_one_job_in_the_job_directory():
    argv = ["/x/cellseg/train.py", "-m", "loss.class_weights=[1,1],[1,5]", "trainer=ddp_cpu"]
    command = child_command(
        argv, "cellseg.train", ["loss.class_weights=[1,5]", "trainer=ddp_cpu"], "/runs/m/1", 1
    )
    assert command[:3] == [sys.executable, "-m", "cellseg.train"]
    assert "-m" not in command[3:] and "--multirun" not in command
    assert "loss.class_weights=[1,1],[1,5]" not in command
    assert "loss.class_weights=[1,5]" in command
    assert 'hydra.run.dir="/runs/m/1"' in command
    assert "hydra.output_subdir=null" in command
    assert "hydra.job.name=train_ddp_process_1" in command


def test_config_name_and_dir_flags_are_kept():
    argv = ["prog", "--config-name", "mine", "-cd", "/cfg", "--config-path=/p", "--multirun", "a=1,2"]
    command = child_command(argv, "cellseg.train", ["a=2"], "/out", 1)
    assert command[3:8] == ["--config-name", "mine", "-cd", "/cfg", "--config-path=/p"]
    assert "--multirun" not in command and "a=1,2" not in command and "a=2" in command


def test_script_launch_uses_the_script_path():
    command = child_command(["/abs/train.py", "x=1"], None, ["x=1"], "/out", 2)
    assert command[:2] == [sys.executable, "/abs/train.py"]
