"""Losses and metrics wired into training: weight maps in batches, loss terms and per-data metrics logged."""

from __future__ import annotations

from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from cellseg.build import build_datamodule
from cellseg.training import train
from tests.conftest import FAST, compose_config
from tests.fixtures import write_isbi


def test_unet_weighted_ce_gets_border_weight_maps_and_shows_them(tmp_path):
    overrides = [*FAST, "loss=unet_weighted_ce", "callbacks=default", "callbacks.early_stopping=null"]
    cfg = compose_config(overrides, run_dir=tmp_path / "run")
    datamodule = build_datamodule(cfg)
    datamodule.setup("fit")
    batch = next(iter(datamodule.train_dataloader()))
    assert batch["weight_map"].shape == batch["mask"].shape
    assert float(batch["weight_map"].min()) > 0.0
    summary = train(cfg)
    assert summary["status"] == "completed"
    events = EventAccumulator(str(tmp_path / "run" / "tensorboard"), size_guidance={"images": 0}).Reload()
    grid = events.Images("val/examples")[0]
    assert grid.width > 5 * 64  # input, target, prediction, errors and the weight map


def test_composite_loss_logs_each_term(tmp_path):
    summary = train(compose_config([*FAST, "loss=dice_ce", "test=false"], run_dir=tmp_path / "run"))
    assert {"train/loss_ce", "train/loss_dice"} <= set(summary["final"])


def test_instance_metrics_are_logged_where_instances_exist(tmp_path):
    summary = train(compose_config([*FAST, "test=false"], run_dir=tmp_path / "run"))
    assert {"val/ap50", "val/map", "val/pq", "val/inst_f1"} <= set(summary["final"])


def test_isbi_data_logs_rand_and_information_scores_and_can_monitor_them(tmp_path):
    root = write_isbi(tmp_path / "isbi", slices=8, size=64)
    overrides = [
        "data=isbi", f"data.root={root}", "data.val_slices=[6,7]", "data.crop_size=64",
        "model.encoder=resnet18", "trainer.max_epochs=1", "trainer.enable_progress_bar=false",
        "trainer.num_sanity_val_steps=0", "callbacks=minimal", "monitor=val/v_rand",
    ]  # fmt: skip
    summary = train(compose_config(overrides, run_dir=tmp_path / "run"))
    for key in ("val/v_rand", "val/v_info", "val/pixel_error", "val/v_rand_threshold", "val/ap50"):
        assert key in summary["final"], key
    assert summary["monitor"]["metric"] == "val/v_rand"
    assert summary["checkpoints"]["best"].endswith("best.ckpt")
