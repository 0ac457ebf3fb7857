"""hydra/sweeper=optuna: a stored study that an interrupted search continues, pruning through Lightning,
failed trials contained, and a clear error without the sweep extra."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import optuna
import pytest
from hydra.core.utils import JobReturn, JobStatus
from optuna.trial import TrialState

from cellseg import config
from cellseg.config import check_command_line
from cellseg.errors import ConfigError
from cellseg.optuna_search import _outcome
from tests.conftest import FAST, REPO_ROOT, compose_config, run_cli

SEARCH = [
    "-m",
    "hydra/sweeper=optuna",
    *(o for o in FAST if not o.startswith("trainer.max_epochs")),
    "trainer.max_epochs=2",
    "test=false",
    "logger=csv",
    "optimizer.lr=tag(log, interval(1e-4, 1e-2))",
    "augmentation=choice(none, basic)",
    "hydra.sweeper.n_trials=2",
]
KILL_JOB_1 = [
    "+callbacks.kill._target_=tests.helpers.KillAtBatch",
    "+callbacks.kill.epoch=1",
    "+callbacks.kill.batch=1",
    "+callbacks.kill.job='1'",
]
ENV = {"PYTHONPATH": os.pathsep.join([str(REPO_ROOT), os.environ.get("PYTHONPATH", "")])}


def _study(sweep: Path) -> optuna.Study:
    return optuna.load_study(study_name="train", storage=f"sqlite:///{sweep / 'optuna.db'}")


def _files(folder: Path) -> dict[Path, bytes]:
    return {p.relative_to(folder): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


@pytest.mark.slow
def test_an_interrupted_search_continues_from_its_stored_study(tmp_path):
    """Trial 1 is SIGKILLed in its second epoch (the whole search dies with it); the resumed search
    runs trial 1 again from its last.ckpt with the same parameters, and asks for no third trial."""
    sweep = tmp_path / "sweep"
    args = [*SEARCH, "hydra.sweeper.pruner=null", *KILL_JOB_1]
    first = run_cli([*args, f"hydra.sweep.dir={sweep}"], cwd=tmp_path, env={**ENV, "CELLSEG_TEST_KILL": "1"})
    assert first.returncode == -signal.SIGKILL
    trials = _study(sweep).trials
    assert [t.state for t in trials] == [TrialState.COMPLETE, TrialState.RUNNING]
    completed, params = _files(sweep / "0"), trials[1].params

    resumed = run_cli([*args, f"sweep.resume={sweep}"], cwd=tmp_path, env=ENV)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert f"cellseg: sweep {sweep}: 2 job(s): 2 completed" in resumed.stdout
    trials = _study(sweep).trials
    assert [t.state for t in trials] == [TrialState.COMPLETE, TrialState.COMPLETE]
    assert trials[1].params == params
    assert _files(sweep / "0") == completed  # the finished trial's job is not touched
    job1 = json.loads((sweep / "1" / "metrics.json").read_text())
    (superseded,) = (sweep / ".superseded").iterdir()
    assert job1["resumed_from"] == str(superseded / "checkpoints" / "last.ckpt")
    assert [e["epoch"] for e in job1["history"]] == [0, 1]
    assert trials[1].value == pytest.approx(job1["best"]["val/dice"])
    assert f"optimizer.lr={params['optimizer.lr']}" in job1["overrides"]
    best = (sweep / "optimization_results.yaml").read_text()
    assert f"best_trial: {max(range(2), key=lambda n: trials[n].value)}" in best


def test_the_pruner_stops_trials_through_lightning_and_they_are_recorded_as_pruned(tmp_path):
    """A pruner that prunes every trial below Dice 0.99 after its first epoch."""
    sweep = tmp_path / "sweep"
    result = run_cli(
        [
            *SEARCH,
            "+hydra.sweeper.pruner.lower=0.99",
            "hydra.sweeper.pruner._target_=optuna.pruners.ThresholdPruner",
            "~hydra.sweeper.pruner.n_startup_trials",
            "hydra.sweeper.pruner.n_warmup_steps=0",
            f"hydra.sweep.dir={sweep}",
        ],
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-3000:]  # pruning is how a search works, not a failure
    assert f"cellseg: sweep {sweep}: 2 job(s): 2 pruned" in result.stdout
    assert [t.state for t in _study(sweep).trials] == [TrialState.PRUNED, TrialState.PRUNED]
    for job in ("0", "1"):
        summary = json.loads((sweep / job / "metrics.json").read_text())
        assert summary["status"] == "pruned" and "pruned at epoch 0" in summary["error"]
        assert [e["epoch"] for e in summary["history"]] == [0]  # the epoch that stopped it is recorded
    assert _study(sweep).trials[0].intermediate_values.keys() == {0}


@pytest.mark.parametrize(
    "result,expected",
    [
        (JobReturn(status=JobStatus.COMPLETED, _return_value=0.8), (TrialState.COMPLETE, 0.8, "")),
        (
            JobReturn(status=JobStatus.COMPLETED, _return_value=None),
            (TrialState.FAIL, None, "refused by its checks (see its metrics.json)"),
        ),
        (
            JobReturn(status=JobStatus.COMPLETED, _return_value=float("nan")),
            (TrialState.FAIL, None, "its score is nan, not a finite number"),
        ),
        (
            JobReturn(status=JobStatus.FAILED, _return_value=RuntimeError("out of memory")),
            (TrialState.FAIL, None, "RuntimeError: out of memory"),
        ),
        (
            JobReturn(status=JobStatus.FAILED, _return_value=optuna.TrialPruned("pruned at epoch 3.")),
            (TrialState.PRUNED, None, "pruned at epoch 3."),
        ),
    ],
)
def test_each_way_a_job_ends_is_told_to_the_study(result, expected):
    assert _outcome(result) == expected


@pytest.mark.slow
def test_a_failed_or_refused_trial_does_not_stop_the_search(tmp_path):
    sweep = tmp_path / "sweep"
    result = run_cli(
        [
            *(o for o in SEARCH if not o.startswith("augmentation")),
            "trainer.max_epochs=1",
            "hydra.sweeper.sampler.seed=0",  # trial 0 samples 1e-3, trial 1 samples -1
            "optimizer.lr=choice(-1, 1e-3)",
            f"hydra.sweep.dir={sweep}",
        ],
        cwd=tmp_path,
    )
    assert result.returncode == 1 and "Traceback" not in result.stderr
    states = {t.params["optimizer.lr"]: t.state for t in _study(sweep).trials}
    assert states == {-1: TrialState.FAIL, 1e-3: TrialState.COMPLETE}
    for trial in _study(sweep).trials:
        summary = json.loads((sweep / str(trial.number) / "metrics.json").read_text())
        assert summary["status"] == ("rejected" if trial.state == TrialState.FAIL else "completed")
    assert (
        result.stdout.strip()
        .splitlines()[-1]
        .startswith(f"cellseg: sweep {sweep}: 2 job(s): 1 completed, 1 rejected; 1 did not complete")
    )


def test_the_search_space_example_composes_with_the_direction_from_the_monitor():
    cfg = compose_config(["hparams_search=unet_optuna"])
    assert cfg.loss._target_.endswith("CompositeLoss") and cfg.trainer.max_epochs == 15
    cfg = compose_config(["hparams_search=unet_optuna", "monitor=val/loss", "monitor_mode=min"])
    assert cfg.monitor_mode == "min"


def test_an_optuna_search_without_the_sweep_extra_names_it(monkeypatch):
    real = config.importlib.util.find_spec
    monkeypatch.setattr(
        config.importlib.util,
        "find_spec",
        lambda name, *a: None if name.startswith("hydra_plugins.hydra_") else real(name, *a),
    )
    for args, shown in [
        (["-m", "hydra/sweeper=optuna"], "hydra/sweeper=optuna"),
        (["-m", "hparams_search=unet_optuna"], "hparams_search=unet_optuna"),
        (["-m", "hydra/launcher=slurm"], "hydra/launcher=slurm"),
    ]:
        with pytest.raises(
            ConfigError, match=rf"{shown} needs hydra-.*-(sweeper|launcher), in cellseg's 'sweep' extra"
        ):
            check_command_line(args)
