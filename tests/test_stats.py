"""``cellseg.stats``: seed 000's DeConvNet table row for row, mult-add formulas, the command line."""

from __future__ import annotations

import csv
import os
import re
import subprocess
import sys
from types import SimpleNamespace

import pytest
import torch
from torch import nn

from cellseg.config import check_command_line
from cellseg.errors import ConfigError
from cellseg.models import create_model
from cellseg.models.stats import model_stats
from tests.conftest import REPO_ROOT, compose_config

SEED_000 = REPO_ROOT.parent / "shared" / "seeds" / "000_79869e7c779fc3b9.txt"

# Seed 000's README table (layer, C x H x W, activations, weights), transcribed.
DECONVNET_TABLE = [
    ("input", (3, 320, 320), 307_200, 0),
    ("conv1-1", (64, 320, 320), 6_553_600, 1_728),
    ("conv1-2", (64, 320, 320), 6_553_600, 36_864),
    ("pool1", (64, 160, 160), 1_638_400, 0),
    ("conv2-1", (128, 160, 160), 3_276_800, 73_728),
    ("conv2-2", (128, 160, 160), 3_276_800, 147_456),
    ("pool2", (128, 80, 80), 819_200, 0),
    ("conv3-1", (256, 80, 80), 1_638_400, 294_912),
    ("conv3-2", (256, 80, 80), 1_638_400, 589_824),
    ("pool3", (256, 40, 40), 409_600, 0),
    ("conv4-1", (512, 40, 40), 819_200, 1_179_648),
    ("conv4-2", (512, 40, 40), 819_200, 2_359_296),
    ("pool4", (512, 20, 20), 204_800, 0),
    ("conv5-1", (1024, 20, 20), 409_600, 4_718_592),
    ("conv5-2", (1024, 20, 20), 409_600, 9_437_184),
    ("deconv5-3", (512, 20, 20), 204_800, 4_718_592),
    ("unpool4", (512, 40, 40), 819_200, 0),
    ("deconv6-1", (512, 40, 40), 819_200, 2_359_296),
    ("deconv6-2", (256, 40, 40), 409_600, 1_179_648),
    ("unpool3", (256, 80, 80), 1_638_400, 0),
    ("deconv7-1", (256, 80, 80), 1_638_400, 589_824),
    ("deconv7-2", (128, 80, 80), 819_200, 294_912),
    ("unpool2", (128, 160, 160), 3_276_800, 0),
    ("deconv8-1", (128, 160, 160), 3_276_800, 147_456),
    ("deconv8-2", (64, 160, 160), 1_638_400, 73_728),
    ("unpool1", (64, 320, 320), 6_553_600, 0),
    ("deconv9-1", (64, 320, 320), 6_553_600, 36_864),
    ("deconv9-2", (64, 320, 320), 6_553_600, 36_864),
    ("output", (2, 320, 320), 204_800, 128),
]


def _seed_readme_rows() -> list[tuple[str, tuple[int, ...], int, int]]:
    """The same table parsed from the seed's README (its C x H x W cells are LaTeX image URLs)."""
    rows = []
    for line in SEED_000.read_text().splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        shape = re.search(r"latex\?(\d+)%5Ctimes%20(\d+)%5Ctimes%20(\d+)", line)
        if len(cells) == 4 and shape:
            rows.append(
                (
                    cells[0],
                    tuple(map(int, shape.groups())),
                    int(cells[2].replace(",", "")),
                    int(cells[3].replace(",", "")),
                )
            )
    return rows


@pytest.fixture(scope="module")
def deconvnet_stats():
    return model_stats(create_model("deconvnet", 3, 2), [3, 320, 320])


def test_deconvnet_table_equals_seed_000(deconvnet_stats):
    rows = [(r.name, r.shape, r.activations, r.weights) for r in deconvnet_stats.rows]
    assert rows == DECONVNET_TABLE
    if SEED_000.is_file():
        assert rows == _seed_readme_rows()
    # mult-adds = kh*kw*Cin*Cout*Hin*Win (seed 000's model_stats); conv1-1: 9*3*64*320*320
    assert deconvnet_stats.rows[1].mult_adds == 9 * 3 * 64 * 320 * 320
    assert deconvnet_stats.rows[-1].mult_adds == 64 * 2 * 320 * 320
    assert deconvnet_stats.weights == sum(r[3] for r in DECONVNET_TABLE)


def test_mult_adds_of_strided_transposed_depthwise_and_linear_layers():
    net = nn.Sequential(
        nn.Conv2d(3, 8, 3, stride=2, padding=1),  # 8 x 5 x 5 out: 9*3*8*25
        nn.Conv2d(8, 8, 3, padding=1, groups=8),  # depthwise: 9*1*8*25
        nn.ConvTranspose2d(8, 4, 2, stride=2),  # scatter per input pixel: 4*8*4*25
        nn.Flatten(2),
        nn.Linear(100, 10),  # per position (4 channels): 100*10*4
    )
    stats = model_stats(net, [3, 10, 10])
    assert [r.mult_adds for r in stats.rows[1:]] == [9 * 3 * 8 * 25, 9 * 8 * 25, 4 * 8 * 4 * 25, 100 * 10 * 4]
    assert [r.shape for r in stats.rows[1:]] == [(8, 5, 5), (8, 5, 5), (4, 10, 10), (4, 10)]
    assert stats.params_total == sum(p.numel() for p in net.parameters())


def test_stats_leave_the_model_as_it_was():
    net = create_model("unet_classic", 1, 2, init_features=4).train()
    bn = next(m for m in net.modules() if isinstance(m, nn.BatchNorm2d))
    before = bn.running_mean.clone()
    model_stats(net, [1, 33, 40])
    assert net.training and torch.equal(bn.running_mean, before)
    assert all(not m._forward_hooks for m in net.modules())


def test_stats_command_writes_csv_and_markdown(tmp_path):
    out = tmp_path / "stats"
    args = ["model=unet_classic", "model.init_features=4", "channels=brightfield", "input_shape=[1,33,40]"]
    result = subprocess.run(
        [sys.executable, "-m", "cellseg.stats", *args, f"hydra.run.dir={out}"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "PYTHONWARNINGS": "ignore", "COLUMNS": "200"},
    )
    assert result.returncode == 0, result.stderr
    assert "down.0.0" in result.stdout and "total" in result.stdout
    with (out / "stats_1x33x40.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert rows[0]["layer"] == "input" and rows[0]["output_shape"] == "1x33x40"
    assert rows[-1]["layer"] == "total"
    assert int(rows[-1]["weights"]) == sum(int(r["weights"]) for r in rows[:-1])
    assert (out / "stats_1x33x40.md").read_text().count("\n| ") >= len(rows)


def test_stats_command_line_is_checked_against_the_stats_config():
    check_command_line(["model=deconvnet", "input_shape=[3,320,320]"], config_name="stats")
    with pytest.raises(ConfigError, match=r"Unknown option 'deconvnett'.*Did you mean 'deconvnet'"):
        check_command_line(["model=deconvnett"], config_name="stats")
    with pytest.raises(ConfigError, match="input_shap"):
        check_command_line(["input_shap=[3,64,64]"], config_name="stats")
    with pytest.raises(ConfigError, match="input_shape"):
        check_command_line(["input_shape=[3,64,64]"])  # not a training key


def test_training_logs_parameters_and_mult_adds_at_the_crop_size():
    from cellseg.hparams import log_hyperparameters

    cfg = compose_config(["model=deconvnet", "data.crop_size=48"])
    logged = {}
    logger = SimpleNamespace(log_hyperparams=lambda params: logged.update(params))  # a logger like CSVLogger
    module = SimpleNamespace(
        net=create_model("deconvnet", 3, 2),
        hparams={"in_channels": 3},
        parameters=lambda: create_model("deconvnet", 3, 2).parameters(),
    )
    log_hyperparameters(SimpleNamespace(loggers=[logger]), cfg, module, {"choices": {}, "overrides": []})
    expected = model_stats(module.net, [3, 48, 48]).mult_adds
    assert logged["model/mult_adds"] == expected > 0
    assert logged["model/params_total"] == 28_288_450
