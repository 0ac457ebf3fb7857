"""python -m cellseg.evaluate: scores of a checkpoint on a split, with tiled inference, written next to the run."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import open_dict

from cellseg.config import config_dir, eval_dir
from cellseg.errors import ConfigError
from cellseg.evaluate import evaluate
from tests.conftest import run_cli
from tests.fixtures import write_isbi
from tests.inference_helpers import write_checkpoint


def _config(ckpt: Path, out: Path, *extra: str):
    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        cfg = compose("evaluate", overrides=[f"ckpt={ckpt}", "progress=false", *extra])
    with open_dict(cfg):
        cfg.paths.run_dir = str(out)
    return cfg


def test_evaluates_on_the_data_the_checkpoint_was_trained_on(trained_run, tmp_path):
    ckpt = trained_run / "checkpoints" / "best.ckpt"
    result = evaluate(_config(ckpt, tmp_path / "eval", "tile.size=64"))
    training = json.loads((trained_run / "metrics.json").read_text())["best"]
    scores = json.loads((tmp_path / "eval" / "eval.json").read_text())["scores"]
    assert scores == pytest.approx(result["scores"], nan_ok=True)
    # Tiled inference (64-px tiles over 128-px images) scores what whole-image validation scored.
    assert scores["val/dice"] == pytest.approx(training["val/dice"], abs=0.01)
    assert {"val/iou", "val/pixel_acc", "val/ap50", "val/pq"} <= set(scores)
    with open(tmp_path / "eval" / "per_image.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert [r["image"] for r in rows] == [f"synthetic_val_{i:04d}" for i in range(4)]
    assert all(0.0 <= float(r["dice"]) <= 1.0 for r in rows)


def test_tensorboard_entries_land_next_to_the_run(trained_run, tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    evaluate(_config(trained_run / "checkpoints" / "best.ckpt", tmp_path / "eval", "tile.size=128"))
    events = EventAccumulator(str(trained_run / "tensorboard" / "eval")).Reload()
    assert {"eval/val/dice", "eval/val/iou"} <= set(events.Tags()["scalars"])


def test_isbi_data_gets_isbi_metrics_and_a_row_per_slice(tmp_path):
    root = write_isbi(tmp_path / "isbi", slices=10, size=32)
    data = {
        "_target_": "cellseg.data.sources.isbi.IsbiDataModule",
        "root": str(root),
        "mask": {"foreground": [255], "background": [0], "connectivity": 1},
        "eval_metrics": ["isbi", "instances"],
        "batch_size": 2,
    }
    ckpt = write_checkpoint(tmp_path / "run" / "checkpoints" / "best.ckpt", data=data)
    result = evaluate(
        _config(ckpt, tmp_path / "eval", "tile.size=32", "tile.overlap=0.5", "save_predictions=true")
    )
    assert len(list((tmp_path / "eval" / "predictions" / "masks").glob("*.png"))) == 5
    assert len(list((tmp_path / "eval" / "predictions" / "probabilities").glob("*.tif"))) == 5
    assert {"val/v_rand", "val/v_info", "val/pixel_error", "val/dice"} <= set(result["scores"])
    assert result["images"] == 5  # the default split validates on the last 5 slices
    assert eval_dir(str(ckpt)) == str(tmp_path / "run" / "eval" / "best")


def test_bad_split_and_unrecorded_data_are_clear_errors(tmp_path):
    ckpt = write_checkpoint(tmp_path / "m.ckpt")
    with pytest.raises(ConfigError, match="split is 'train'"):
        evaluate(_config(ckpt, tmp_path / "eval", "split=train"))
    with pytest.raises(ConfigError, match="does not record its data set"):
        evaluate(_config(ckpt, tmp_path / "eval"))


def test_cli_with_data_from_the_command_line(tmp_path):
    root = write_isbi(tmp_path / "isbi", slices=6, size=32)
    ckpt = write_checkpoint(tmp_path / "run" / "checkpoints" / "best.ckpt")
    args = [f"ckpt={ckpt}", "data=isbi", f"data.root={root}", "tile.size=32", "progress=false"]
    result = run_cli(args, tmp_path, timeout=300, command="cellseg.evaluate")
    assert result.returncode == 0, result.stderr[-2000:]
    (eval_json,) = (tmp_path / "run" / "eval" / "best").glob("val_*/eval.json")
    assert "val/v_rand" in json.loads(eval_json.read_text())["scores"]
