"""End-to-end training runs on small synthetic data: the run directory contract, reload, resume, AMP."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch

from cellseg.build import build_datamodule
from cellseg.module import SegmentationModule
from cellseg.training import train
from tests.conftest import FAST, compose_config, run_cli


def _metrics(run_dir: Path) -> dict:
    return json.loads((run_dir / "metrics.json").read_text())


@pytest.fixture(scope="module")
def two_epoch_run(tmp_path_factory) -> tuple[Path, dict]:
    """One short run shared by the tests that only read its outputs."""
    run_dir = tmp_path_factory.mktemp("run") / "two_epochs"
    cfg = compose_config([*FAST, "trainer.max_epochs=2", "logger=tensorboard"], run_dir=run_dir)
    return run_dir, train(cfg)


def test_run_writes_checkpoints_tensorboard_and_metrics(two_epoch_run):
    run_dir, summary = two_epoch_run
    assert (run_dir / "checkpoints" / "best.ckpt").is_file()
    assert (run_dir / "checkpoints" / "last.ckpt").is_file()
    assert list((run_dir / "tensorboard").glob("events.out.tfevents.*"))
    metrics = _metrics(run_dir)
    assert metrics["status"] == "completed"
    assert metrics["epochs_run"] == 2
    assert [e["epoch"] for e in metrics["history"]] == [0, 1]
    assert metrics["wall_time_s"] > 0
    for key in ("val/dice", "val/iou", "val/pixel_acc", "val/acc_background", "val/acc_cell", "val/loss"):
        assert 0.0 <= metrics["final"][key] <= (1.0 if key != "val/loss" else 100.0), key
        assert key in metrics["best"]
    assert "train/dice" in metrics["final"] and "train/loss" in metrics["final"]
    assert metrics["best"]["val/dice"] == max(e["val/dice"] for e in metrics["history"])
    assert set(metrics["test"]) >= {"test/dice", "test/iou", "test/acc_cell"}
    assert metrics["checkpoints"]["best"].endswith("best.ckpt")
    assert summary["best"] == metrics["best"]


def test_tensorboard_has_scalars_learning_rate_and_image_grid(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run_dir = tmp_path / "run"
    cfg = compose_config([*FAST, "callbacks=default", "callbacks.early_stopping=null"], run_dir=run_dir)
    train(cfg)
    events = EventAccumulator(str(run_dir / "tensorboard"), size_guidance={"images": 0}).Reload()
    scalars = set(events.Tags()["scalars"])
    assert {"val/dice", "val/iou", "val/acc_cell", "train/loss", "lr-Adam"} <= scalars
    assert "val/examples" in events.Tags()["images"]
    grid = events.Images("val/examples")[0]
    assert grid.width > 4 * 64  # four panels side by side


def test_checkpoints_reload_and_reproduce_validation_metrics(two_epoch_run):
    run_dir, summary = two_epoch_run
    cfg = compose_config([*FAST], run_dir=run_dir)
    for name, expected in (("best", summary["best"]), ("last", summary["final"])):
        module = SegmentationModule.load_from_checkpoint(
            run_dir / "checkpoints" / f"{name}.ckpt", weights_only=True
        )
        trainer = pl.Trainer(
            accelerator="cpu", logger=False, enable_progress_bar=False, enable_checkpointing=False
        )
        scores = trainer.validate(module, datamodule=build_datamodule(cfg), verbose=False)[0]
        for key in ("val/dice", "val/iou", "val/pixel_acc"):
            assert scores[key] == pytest.approx(expected[key], abs=1e-6), (name, key)


def test_checkpoint_is_self_contained(two_epoch_run):
    run_dir, _ = two_epoch_run
    checkpoint = torch.load(run_dir / "checkpoints" / "best.ckpt", map_location="cpu", weights_only=True)
    hparams = checkpoint["hyper_parameters"]
    assert hparams["model"]["arch"] == "unet" and hparams["in_channels"] == 3
    assert hparams["pipeline"]["channels"] == ["cytoplasm", "membrane", "mitochondria"]
    assert hparams["pipeline"]["normalization"]["method"] == "percentile"


def test_checkpoint_stores_normalisation_statistics_fitted_on_the_training_split(tmp_path):
    run_dir = tmp_path / "run"
    # augmentation=none: basic's brightness/contrast clips to [0, 1] and is refused with meanstd
    meanstd = [*FAST, "data.normalization.method=meanstd", "augmentation=none"]
    train(compose_config([*meanstd, "test=false"], run_dir=run_dir))
    checkpoint = torch.load(run_dir / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    pipeline = checkpoint["hyper_parameters"]["pipeline"]
    datamodule = build_datamodule(compose_config(meanstd))
    datamodule.setup("fit")
    assert pipeline["normalization"]["mean"] == pytest.approx(datamodule.normalization.mean)
    assert pipeline["normalization"]["std"] == pytest.approx(datamodule.normalization.std)
    assert pipeline["data"]["_target_"].endswith("SyntheticDataModule")  # evaluate finds the data again


def test_csv_logger_writes_metrics(tmp_path):
    run_dir = tmp_path / "run"
    train(compose_config([*FAST, "logger=csv"], run_dir=run_dir))
    (metrics_csv,) = run_dir.glob("csv/**/metrics.csv")
    header = metrics_csv.read_text().splitlines()[0].split(",")
    assert {"val/dice", "train/loss", "test/dice"} <= set(header)


def test_resume_continues_at_the_next_epoch_with_optimizer_and_scheduler_state(two_epoch_run, tmp_path):
    first_dir, first = two_epoch_run
    last = first_dir / "checkpoints" / "last.ckpt"
    before = torch.load(last, map_location="cpu", weights_only=True)
    cfg = compose_config(
        [*FAST, "trainer.max_epochs=3", f"ckpt_path={last}", "test=false"], run_dir=tmp_path / "resumed"
    )
    summary = train(cfg)
    assert [e["epoch"] for e in summary["history"]] == [0, 1, 2]
    assert summary["history"][:2] == first["history"][:2]
    assert summary["resumed_from"] == str(last.resolve())
    after = torch.load(
        tmp_path / "resumed" / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True
    )
    assert after["epoch"] == before["epoch"] + 1
    assert after["global_step"] == before["global_step"] * 3 // 2
    adam_steps = lambda ckpt: next(iter(ckpt["optimizer_states"][0]["state"].values()))["step"]  # noqa: E731
    assert float(adam_steps(after)) == float(adam_steps(before)) * 3 / 2
    assert after["lr_schedulers"][0]["last_epoch"] == before["lr_schedulers"][0]["last_epoch"] + 1


def test_resume_restores_early_stopping_state(tmp_path):
    overrides = [*FAST, "callbacks=default", "callbacks.early_stopping.patience=50", "test=false"]
    first = train(compose_config([*overrides, "trainer.max_epochs=2"], run_dir=tmp_path / "a"))
    last = tmp_path / "a" / "checkpoints" / "last.ckpt"
    train(compose_config([*overrides, "trainer.max_epochs=3", f"ckpt_path={last}"], run_dir=tmp_path / "b"))
    resumed = torch.load(tmp_path / "b" / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    state = next(v for k, v in resumed["callbacks"].items() if k.startswith("EarlyStopping"))
    first_two = [e["val/dice"] for e in first["history"]]
    all_three = [
        *first_two,
        json.loads((tmp_path / "b" / "metrics.json").read_text())["history"][2]["val/dice"],
    ]
    assert float(state["best_score"]) == pytest.approx(max(all_three), abs=1e-6)
    improved_last = all_three[2] > max(first_two)
    expected_wait = 0 if improved_last else (1 if first_two[1] > first_two[0] else 2)
    assert state["wait_count"] == expected_wait


def test_missing_resume_checkpoint_fails_before_work(tmp_path):
    cfg = compose_config([*FAST, f"ckpt_path={tmp_path / 'nope.ckpt'}"], run_dir=tmp_path / "run")
    with pytest.raises(FileNotFoundError, match=r"nope\.ckpt' does not exist"):
        train(cfg)
    assert not (tmp_path / "run").exists()


@pytest.mark.slow
def test_bf16_mixed_precision_trains_on_cpu(tmp_path):
    summary = train(
        compose_config([*FAST, "trainer.precision=bf16-mixed", "test=false"], run_dir=tmp_path / "r")
    )
    assert summary["status"] == "completed"
    assert 0.0 <= summary["final"]["val/dice"] <= 1.0
    assert math.isfinite(summary["final"]["val/loss"])


def test_unwritable_output_directory_fails_before_training(tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    cfg = compose_config([*FAST], run_dir=blocker / "run")
    with pytest.raises(PermissionError, match="Cannot write to the output directory"):
        train(cfg)


def test_existing_run_directory_is_never_overwritten(two_epoch_run):
    run_dir, _ = two_epoch_run
    before = (run_dir / "metrics.json").read_bytes()
    with pytest.raises(FileExistsError, match="refusing to overwrite"):
        train(compose_config([*FAST], run_dir=run_dir))
    assert (run_dir / "metrics.json").read_bytes() == before


def test_crash_keeps_last_checkpoint_and_marks_the_run_failed(tmp_path):
    run_dir = tmp_path / "crash"
    cfg = compose_config(
        [
            *FAST,
            "trainer.max_epochs=3",
            "+callbacks.crash._target_=tests.helpers.CrashAtEpoch",
            "+callbacks.crash.epoch=1",
        ],
        run_dir=run_dir,
    )
    with pytest.raises(RuntimeError, match="simulated crash"):
        train(cfg)
    last = torch.load(run_dir / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert last["epoch"] == 0
    metrics = _metrics(run_dir)
    assert metrics["status"] == "failed" and "simulated crash" in metrics["error"]
    assert [e["epoch"] for e in metrics["history"]] == [0]


def test_cli_run_writes_hydra_config_and_log(tmp_path):
    result = run_cli([*FAST, "test=false", "task_name=cli", "trainer.max_epochs=2"], cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    runs = list((tmp_path / "outputs" / "cli").iterdir())
    assert len(runs) == 1
    run = runs[0]
    assert (run / ".hydra" / "config.yaml").is_file() and (run / ".hydra" / "overrides.yaml").is_file()
    assert _metrics(run)["choices"]["model"] == "unet"
    assert "val/dice" in result.stdout or "dice" in result.stdout  # the final metrics table
    # The log holds a line per epoch and Lightning's own messages, without its advertising.
    log = (run / "train.log").read_text()
    history = _metrics(run)["history"]
    for entry in history:
        number = entry["epoch"] + 1
        assert f"epoch {number}/2: train/loss " in log
        assert f"val/dice {entry['val/dice']:.4g} (best " in log
    assert "`Trainer.fit` stopped: `max_epochs=2` reached" in log and "Tip:" not in log + result.stdout
    # Standard output is a pipe here, not a terminal: the epoch lines go there too, without timestamps.
    assert [line for line in result.stdout.splitlines() if line.startswith("epoch ")] == [
        line.split(" - ", 1)[1] for line in log.splitlines() if "[cellseg.train]" in line
    ]


@pytest.mark.slow
def test_multirun_runs_each_job_with_its_metrics(tmp_path):
    result = run_cli(
        [
            "-m",
            *FAST,
            "test=false",
            "loss.class_weights=[1,1],[1,5]",
            f"hydra.sweep.dir={tmp_path / 'sweep'}",
        ],
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    jobs = sorted(p.name for p in (tmp_path / "sweep").iterdir() if p.is_dir() and not p.name.startswith("."))
    assert jobs == ["0", "1"]
    weights = [_metrics(tmp_path / "sweep" / j)["overrides"] for j in jobs]
    assert "loss.class_weights=[1,1]" in weights[0] and "loss.class_weights=[1,5]" in weights[1]


@pytest.mark.slow
def test_ddp_cpu_two_processes_one_run_directory(tmp_path):
    result = run_cli(
        [*FAST, "trainer=ddp_cpu", "test=true", f"hydra.run.dir={tmp_path / 'ddp'}"], cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert [p.name for p in tmp_path.iterdir()] == ["ddp"]
    metrics = _metrics(tmp_path / "ddp")
    assert metrics["status"] == "completed" and "test/dice" in metrics["test"]
    assert (tmp_path / "ddp" / "checkpoints" / "best.ckpt").is_file()
    assert (tmp_path / "ddp" / "train_ddp_process_1.log").is_file()  # rank 1 ran in the same folder


@pytest.mark.slow
def test_ddp_cpu_multirun_gives_each_job_one_directory(tmp_path):
    """Lightning + Hydra multirun + DDP: children must re-run their own job, not the whole sweep."""
    sweep = tmp_path / "sweep"
    result = run_cli(
        [
            "-m",
            *FAST,
            "trainer=ddp_cpu",
            "test=false",
            "loss.class_weights=[1,1],[1,5]",
            f"hydra.sweep.dir={sweep}",
        ],
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert sorted(p.name for p in sweep.iterdir()) == ["0", "1", "multirun.yaml"]
    for job in ("0", "1"):
        assert _metrics(sweep / job)["status"] == "completed"
        assert (sweep / job / "train_ddp_process_1.log").is_file()
    assert [p.name for p in tmp_path.iterdir()] == ["sweep"]  # no stray run folders


@pytest.mark.slow
def test_ddp_metrics_equal_single_process_metrics(two_epoch_run, tmp_path):
    """Two ranks split an odd number of test images; summed confusion matrices give the same scores."""
    run_dir, _ = two_epoch_run
    common = [
        *FAST,
        "data.num_test=5",
        "train=false",
        "test=true",
        f"ckpt_path={run_dir / 'checkpoints' / 'best.ckpt'}",
    ]
    scores = {}
    for trainer in ("cpu", "ddp_cpu"):
        result = run_cli([*common, f"trainer={trainer}", f"hydra.run.dir={tmp_path / trainer}"], cwd=tmp_path)
        assert result.returncode == 0, result.stderr[-3000:]
        scores[trainer] = _metrics(tmp_path / trainer)["test"]
    assert set(scores["cpu"]) >= {"test/dice", "test/iou", "test/pixel_acc", "test/acc_cell"}
    for key, value in scores["cpu"].items():
        assert scores["ddp_cpu"][key] == pytest.approx(value, abs=1e-6), key
