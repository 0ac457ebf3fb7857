"""The learning-rate range test: python -m cellseg.lr_find and optimizer.lr=auto in training."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from cellseg.errors import ConfigError
from cellseg.lr_finder import LRFindSettings
from cellseg.training import train
from tests.conftest import compose_config, run_cli

TINY = [
    "data.num_train=8",
    "data.num_val=2",
    "data.num_test=0",
    "data.size=32",
    "data.crop_size=32",
    "data.batch_size=2",
    "model=unet_classic",
    "model.init_features=4",
    "model.depth=2",
    "lr_find.num_training=25",
    "trainer.enable_progress_bar=false",
]


def test_lr_find_writes_the_curve_the_plot_and_the_command_that_uses_the_suggestion(tmp_path):
    out = tmp_path / "lr"
    result = run_cli([*TINY, f"hydra.run.dir={out}"], tmp_path, command="cellseg.lr_find")
    assert result.returncode == 0, result.stderr
    found = json.loads((out / "lr_find.json").read_text())
    rates = found["learning_rates"]
    assert len(rates) == len(found["losses"]) >= 10 and rates == sorted(rates)
    assert rates[0] == pytest.approx(1e-7, rel=0.5) and rates[0] < found["suggestion"] < rates[-1]
    assert found["command"].startswith("python -m cellseg.train data.num_train=8")
    assert found["command"].endswith(f"optimizer.lr={found['suggestion']:.3g}")
    assert "lr_find.num_training" not in found["command"]
    assert f"{found['suggestion']:.3g}" in result.stderr + result.stdout
    plot = np.asarray(Image.open(out / "lr_find.png").convert("L"))
    assert plot.std() > 5
    assert not list(out.glob(".lr_find_*.ckpt"))  # Lightning's temporary checkpoint is gone


def test_optimizer_lr_auto_trains_with_the_suggestion_and_records_it(tmp_path):
    cfg = compose_config(
        [*TINY, "optimizer.lr=auto", "trainer.max_epochs=1", "callbacks=minimal"], tmp_path / "run"
    )
    summary = train(cfg)
    suggestion = summary["lr_find"]["suggestion"]
    assert summary["status"] == "completed" and summary["epochs_run"] == 1 and 1e-7 < suggestion < 1.0
    recorded = json.loads((tmp_path / "run" / "metrics.json").read_text())["lr_find"]
    assert recorded["suggestion"] == suggestion and recorded["settings"]["num_training"] == 25
    assert (tmp_path / "run" / "lr_find.png").is_file()


def test_lr_find_settings_are_checked():
    with pytest.raises(ConfigError, match="need 0 < min_lr < max_lr"):
        LRFindSettings(min_lr=1.0, max_lr=0.1)
    with pytest.raises(ConfigError, match=r"must be >= 20 steps"):
        LRFindSettings(num_training=10)  # Lightning could not suggest a rate from 10 points
    with pytest.raises(ConfigError, match=r"lr_find\.mode is 'cubic'"):
        LRFindSettings(mode="cubic")
