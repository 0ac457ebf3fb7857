"""Exact resume: a run SIGKILLed in the middle of an epoch, resumed from last.ckpt, ends with the weights
of the run that was never interrupted, bit for bit (CPU, trainer.deterministic=true)."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import pytest
import torch

from cellseg.runs import run_status
from tests.conftest import FAST, REPO_ROOT, run_cli

#: Every random stream in play: shuffling, crops, flips/rotations, a channel drawn per sample.
RUN = [
    *(o for o in FAST if not o.startswith(("model.", "trainer.max_epochs"))),
    "model=unet_classic",
    "model.init_features=8",
    "channels=random_fluorescence",
    "augmentation=basic",
    "trainer.max_epochs=3",
    "trainer.deterministic=true",
    "test=false",
    "logger=csv",
]
KILL = [
    "+callbacks.kill._target_=tests.helpers.KillAtBatch",
    "+callbacks.kill.epoch=1",
    "+callbacks.kill.batch=1",
]


def _train(args: list[str], run_dir: Path, cwd: Path, extra: tuple[str, ...] = ()):
    env = {"PYTHONPATH": os.pathsep.join([str(REPO_ROOT), os.environ.get("PYTHONPATH", "")])}
    return run_cli([*args, *extra, f"hydra.run.dir={run_dir}"], cwd=cwd, env=env)


def _state(run_dir: Path) -> tuple[dict, list]:
    checkpoint = torch.load(run_dir / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    history = json.loads((run_dir / "metrics.json").read_text())["history"]
    return checkpoint, [{k: v for k, v in e.items() if k != "step"} for e in history]


@pytest.mark.parametrize("workers", [0, pytest.param(2, marks=pytest.mark.slow)])
def test_a_run_killed_mid_epoch_resumes_to_the_same_weights(tmp_path, workers):
    run = [*RUN, f"data.num_workers={workers}"]
    whole = _train(run, tmp_path / "whole", tmp_path)
    assert whole.returncode == 0, whole.stderr[-3000:]

    killed = _train(run, tmp_path / "killed", tmp_path, tuple(KILL))
    assert killed.returncode == -signal.SIGKILL
    metrics = json.loads((tmp_path / "killed" / "metrics.json").read_text())
    assert run_status(metrics) == "killed" and len(metrics["history"]) == 1  # epoch 1 died half-way

    last = tmp_path / "killed" / "checkpoints" / "last.ckpt"
    resumed = _train(run, tmp_path / "resumed", tmp_path, (f"ckpt_path={last}",))
    assert resumed.returncode == 0, resumed.stderr[-3000:]

    expected, expected_history = _state(tmp_path / "whole")
    got, got_history = _state(tmp_path / "resumed")
    assert got["epoch"] == expected["epoch"] == 2
    different = [k for k, v in expected["state_dict"].items() if not torch.equal(v, got["state_dict"][k])]
    assert different == [], f"{len(different)} of {len(expected['state_dict'])} tensors differ"
    moments = lambda c: [t for s in c["optimizer_states"][0]["state"].values() for t in s.values()]  # noqa: E731
    assert all(torch.equal(a, b) for a, b in zip(moments(expected), moments(got), strict=True))
    assert got_history == expected_history
