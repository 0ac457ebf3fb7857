"""A checkpoint written by cellseg 0.1.0 (commit 6116c5b) keeps working: same predictions, same scores.

``tests/data/checkpoint_v0_1/`` holds a 2-feature U-Net trained for 3 epochs on synthetic cells with a
mixed channel strategy (a selected channel, a merge with dropout, a random draw), the boundary target,
meanstd statistics and ``loss=unet_weighted_ce``, plus what ``python -m cellseg.predict`` and
``python -m cellseg.evaluate`` wrote with it at that commit (see the README there). Moving code around
must not change a single output.
"""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import tifffile
from PIL import Image

from tests.conftest import REPO_ROOT, run_cli

FIXTURE = REPO_ROOT / "tests" / "data" / "checkpoint_v0_1"
EXPECTED = FIXTURE / "expected"


@pytest.fixture
def old_checkpoint(tmp_path: Path) -> Path:
    """A copy of the old checkpoint (evaluate writes TensorBoard entries next to it)."""
    return Path(shutil.copy(FIXTURE / "model.ckpt", tmp_path / "model.ckpt"))


def test_old_checkpoint_predicts_the_same_probabilities_masks_and_instances(old_checkpoint, tmp_path):
    args = [
        f"ckpt={old_checkpoint}",
        f"input={FIXTURE / 'cells.tif'}",
        f"output={tmp_path / 'pred'}",
        "save=[mask,probability,instances]",
        "probability=all",
        "progress=false",
    ]
    result = run_cli(args, tmp_path, timeout=300, command="cellseg.predict")
    assert result.returncode == 0, result.stderr
    out = tmp_path / "pred"
    np.testing.assert_allclose(
        tifffile.imread(out / "probabilities" / "cells.tif"),
        tifffile.imread(EXPECTED / "probabilities" / "cells.tif"),
        rtol=0,
        atol=1e-6,
    )
    assert np.array_equal(
        np.asarray(Image.open(out / "masks" / "cells.png")),
        np.asarray(Image.open(EXPECTED / "masks" / "cells.png")),
    )
    assert np.array_equal(
        tifffile.imread(out / "instances" / "cells.tif"),
        tifffile.imread(EXPECTED / "instances" / "cells.tif"),
    )
    manifest = json.loads((out / "predict.json").read_text())
    assert manifest["class_names"] == ["background", "interior", "border"]
    assert manifest["channel_names"] == ["nucleus", "cytoplasm", "membrane", "mitochondria", "brightfield"]


def test_old_checkpoint_evaluates_on_its_stored_data_config_to_the_same_scores(old_checkpoint, tmp_path):
    args = [f"ckpt={old_checkpoint}", "split=val", "progress=false", f"hydra.run.dir={tmp_path / 'eval'}"]
    result = run_cli(args, tmp_path, timeout=300, command="cellseg.evaluate")
    assert result.returncode == 0, result.stderr
    scores = json.loads((tmp_path / "eval" / "eval.json").read_text())["scores"]
    expected = json.loads((EXPECTED / "eval_val.json").read_text())["scores"]
    assert scores == pytest.approx(expected, abs=1e-6, nan_ok=True)
    with open(tmp_path / "eval" / "per_image.csv") as got, open(EXPECTED / "per_image_val.csv") as want:
        rows, expected_rows = list(csv.DictReader(got)), list(csv.DictReader(want))
    assert [r["image"] for r in rows] == [r["image"] for r in expected_rows]
    for row, expected_row in zip(rows, expected_rows, strict=True):
        for key in ("pixel_acc", "dice_background", "acc_border"):
            assert float(row[key]) == pytest.approx(float(expected_row[key]), abs=1e-6)
