"""Every bad input to train is one clear line before work starts: value types, values, monitor, ckpt_path."""

from __future__ import annotations

import os

import pytest
import torch

from cellseg.build import build_training
from cellseg.config import check_command_line
from cellseg.errors import ConfigError
from cellseg.inference.checkpoint import CheckpointError
from cellseg.preflight import (
    check_monitor,
    check_resume_fits,
    check_training_values,
    logged_metrics,
    read_resume_checkpoint,
)
from cellseg.training import train
from tests.conftest import FAST, compose_config

TRAINED = [*(o for o in FAST if not o.startswith("model.")), "model=unet_classic", "model.init_features=16"]


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("seed=abc", "seed=abc: expected a number, like its default seed=42."),
        ("trainer.max_epochs=abc", "trainer.max_epochs=abc: expected a number"),
        ("train=1", "train=1: expected true or false"),
        ("optimizer.lr=fast", "optimizer.lr=fast: expected a number (or auto)"),
        ("tags=dev", "tags=dev: expected a list such as [1,2]"),
    ],
)
def test_a_value_of_the_wrong_type_is_named_before_any_work(override, message):
    with pytest.raises(
        ConfigError, match=message.replace("[", r"\[").replace("(", r"\(").replace(")", r"\)")
    ):
        check_command_line([override])


@pytest.mark.parametrize(
    "override", ["optimizer.lr=auto", "trainer.precision=bf16-mixed", "trainer.devices=[0,1]", "seed=3"]
)
def test_values_of_the_right_kind_pass(override):
    check_command_line([override])


def test_each_value_of_a_sweep_has_its_type_checked():
    with pytest.raises(ConfigError, match="seed=abc"):
        check_command_line(["-m", "seed=1,abc"])


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("optimizer.lr=-1", "optimizer.lr=-1: expected a positive number"),
        ("optimizer.lr=0", "optimizer.lr=0: expected a positive number"),
        ("trainer.max_epochs=0", "trainer.max_epochs=0: expected a whole number >= 1"),
        ("trainer.max_epochs=2.5", "trainer.max_epochs=2.5: expected a whole number"),
        ("seed=1.5", "seed=1.5: expected a whole number"),
        ("data.batch_size=0", "data.batch_size=0: expected a whole number >= 1"),
        ("monitor_mode=maximum", "monitor_mode=maximum: expected min or max"),
    ],
)
def test_values_torch_or_lightning_would_reject_late_are_refused_first(override, message, tmp_path):
    cfg = compose_config([*FAST, override], run_dir=tmp_path / "run")
    with pytest.raises(ConfigError, match=message):
        check_training_values(cfg)
    with pytest.raises(ConfigError, match=message):
        train(cfg)
    assert not (tmp_path / "run").exists()


@pytest.fixture(scope="module")
def synthetic_module(tmp_path_factory):
    cfg = compose_config(TRAINED, run_dir=tmp_path_factory.mktemp("module"))
    return build_training(cfg)[1]


def test_the_monitor_must_be_a_metric_the_run_logs(synthetic_module):
    assert {"val/dice", "val/ap50", "val/acc_cell", "train/loss"} <= set(logged_metrics(synthetic_module))
    check_monitor("val/acc_cell", synthetic_module)
    with pytest.raises(ConfigError, match=r"monitor=val/dcie: .*did you mean val/dice\? Validation metrics"):
        check_monitor("val/dcie", synthetic_module)
    with pytest.raises(ConfigError, match="monitor=val/v_rand"):
        check_monitor("val/v_rand", synthetic_module)  # ISBI's score: the synthetic data does not log it


def test_resume_checkpoint_problems_are_one_line_each(trained_run, tmp_path):
    last = trained_run / "checkpoints" / "last.ckpt"
    truncated = tmp_path / "truncated.ckpt"
    truncated.write_bytes(last.read_bytes()[:5000])
    with pytest.raises(CheckpointError, match="cannot be read as a PyTorch checkpoint"):
        read_resume_checkpoint(str(truncated))

    bare = tmp_path / "bare.ckpt"
    torch.save({"net.weight": torch.zeros(1)}, bare)
    with pytest.raises(CheckpointError, match="is not a Lightning checkpoint"):
        read_resume_checkpoint(str(bare))

    weights_only = tmp_path / "weights.ckpt"
    checkpoint = torch.load(last, map_location="cpu", weights_only=True)
    torch.save({k: v for k, v in checkpoint.items() if k not in ("optimizer_states", "loops")}, weights_only)
    with pytest.raises(
        CheckpointError, match=r"holds weights but no training state \(optimizer_states, loops\)"
    ):
        read_resume_checkpoint(str(weights_only))

    assert read_resume_checkpoint(str(last))[0] == str(last.resolve())


class _Payload:
    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_a_malicious_checkpoint_is_refused_without_running_it(tmp_path):
    marker = tmp_path / "ran"
    evil = tmp_path / "evil.ckpt"
    torch.save({"state_dict": {}, "payload": _Payload(str(marker))}, evil)
    cfg = compose_config([*TRAINED, f"ckpt_path={evil}"], run_dir=tmp_path / "run")
    with pytest.raises(CheckpointError, match="cannot be read as a PyTorch checkpoint"):
        train(cfg)
    assert not marker.exists() and not (tmp_path / "run").exists()


def test_a_checkpoint_of_other_channels_classes_or_network_is_refused(trained_run, tmp_path):
    path, checkpoint = read_resume_checkpoint(str(trained_run / "checkpoints" / "last.ckpt"))

    def module(*overrides: str):
        return build_training(compose_config([*TRAINED, *overrides], run_dir=tmp_path))[1]

    with pytest.raises(
        CheckpointError, match=r"was trained on 3 input channel\(s\) .*the configured channels give 1"
    ):
        check_resume_fits(path, checkpoint, module("channels=nucleus"), 20)
    with pytest.raises(
        CheckpointError,
        match=r"predicts background, cell; the configured target gives background, interior, border",
    ):
        check_resume_fits(path, checkpoint, module("target=boundary"), 20)
    with pytest.raises(
        CheckpointError, match=r"is of another network .*init_features: 16 in the checkpoint, 8 now"
    ):
        check_resume_fits(path, checkpoint, module("model.init_features=8"), 20)


def test_resuming_with_fewer_epochs_than_were_trained_is_an_error(trained_run, tmp_path):
    last = trained_run / "checkpoints" / "last.ckpt"
    cfg = compose_config(
        [*TRAINED, "data.size=128", "data.crop_size=128", "trainer.max_epochs=5", f"ckpt_path={last}"],
        run_dir=tmp_path / "run",
    )
    with pytest.raises(ConfigError, match=r"trainer.max_epochs=5: .* has already trained 8 epoch\(s\)"):
        train(cfg)
    assert not (tmp_path / "run").exists()
