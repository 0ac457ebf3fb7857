"""The config tree: every option composes and instantiates; typos fail early with helpful messages."""

from __future__ import annotations

import pytest
import torch
from hydra.utils import instantiate

from cellseg.build import build_callbacks, build_datamodule, build_loggers, build_training
from cellseg.config import ConfigError, check_command_line, config_dir, group_options
from cellseg.data.sources.base import SegmentationDataModule
from cellseg.module import SegmentationModule
from tests.conftest import FAST, compose_config, run_cli
from tests.fixtures import channels_data, data_overrides, write_isbi

GROUPS = ["model", "data", "channels", "target", "loss", "augmentation", "optimizer", "scheduler",
          "trainer", "callbacks", "logger", "experiment"]  # fmt: skip


def test_config_tree_has_every_group_and_required_top_level_keys():
    root = config_dir()
    for group in [*GROUPS, "paths", "hydra"]:
        assert (root / group).is_dir(), f"missing config group {group}"
    cfg = compose_config()
    for key in ("seed", "ckpt_path", "tags", "train", "test", "task_name", "monitor"):
        assert key in cfg
    assert set(group_options("optimizer")) >= {"adam", "adamw", "sgd"}
    assert set(group_options("scheduler")) >= {"none", "cosine", "plateau", "onecycle"}
    assert set(group_options("trainer")) >= {"default", "cpu", "gpu", "ddp", "ddp_cpu"}
    assert set(group_options("augmentation")) >= {"none", "basic"}
    assert set(group_options("logger")) >= {"tensorboard", "csv"}


SMALL_SYNTHETIC = [
    "data.num_train=4",
    "data.num_val=2",
    "data.num_test=0",
    "data.size=64",
    "data.crop_size=64",
]


def _option_overrides(group: str, option: str, tmp_path) -> list[str]:
    """The overrides for one option, with the data set (written under tmp_path) it needs."""
    if group == "data":
        data = option
        overrides = data_overrides(option, tmp_path)
    elif group == "channels":
        data = channels_data(option)
        overrides = [*data_overrides(data, tmp_path), f"channels={option}"]
    else:
        data = "synthetic"
        overrides = [f"{group}={option}"]
        if group == "target" and option == "from_channel":
            overrides += ["target.channel=nucleus", "channels=brightfield"]
        if group == "loss" and option in ("distance", "flows"):  # the losses of those targets
            overrides += [f"target={option}"]
    return overrides + (SMALL_SYNTHETIC if data == "synthetic" else [])


@pytest.mark.parametrize(
    "group,option", [(g, o) for g in GROUPS if g != "experiment" for o in group_options(g)]
)
def test_every_option_composes_and_instantiates(group, option, tmp_path):
    cfg = compose_config(_option_overrides(group, option, tmp_path), run_dir=tmp_path / "run")
    datamodule, module = build_training(cfg)
    assert isinstance(datamodule, SegmentationDataModule)
    datamodule.setup("fit")
    batch = next(iter(datamodule.train_dataloader()))
    assert batch["image"].shape[1] == datamodule.in_channels and batch["mask"].dtype == torch.int64
    assert datamodule.in_channels == len(cfg.channels.get("specs") or cfg.channels.codes)
    assert isinstance(module, SegmentationModule)
    with torch.no_grad():
        logits = module.eval()(torch.zeros(1, datamodule.in_channels, 64, 64))
    assert logits.shape == (1, datamodule.target.outputs.num_channels, 64, 64)
    if module.layout.has_regression:
        assert batch["regression"].shape[1] == len(module.layout.regression_names)
    build_callbacks(cfg)
    build_loggers(cfg)
    if group == "trainer":
        # Instantiating a GPU trainer on a CPU machine fails by design; the config itself must resolve.
        assert cfg.trainer.accelerator in {"auto", "cpu", "gpu"}
        if cfg.trainer.accelerator != "gpu":
            instantiate(cfg.trainer, logger=False, enable_checkpointing=False)


@pytest.mark.parametrize("option", group_options("experiment"))
def test_every_experiment_composes(option, tmp_path):
    cfg = compose_config([f"experiment={option}"], run_dir=tmp_path)
    if cfg.data._target_.endswith("IsbiDataModule"):  # an experiment on ISBI: point it at a fixture copy
        root = write_isbi(tmp_path / "isbi")
        cfg = compose_config([f"experiment={option}", f"data.root={root}"], run_dir=tmp_path)
    assert cfg.task_name == option
    build_training(cfg)


def test_model_size_follows_channels_and_target(tmp_path):
    cfg = compose_config(["channels=brightfield_nucleus"], run_dir=tmp_path)
    _, module = build_training(cfg)
    first_conv = next(m for m in module.net.modules() if hasattr(m, "in_channels"))
    assert first_conv.in_channels == 2
    assert module.hparams.in_channels == 2
    assert module.hparams.class_names == ["background", "cell"]


def test_misspelled_group_option_names_valid_choices():
    with pytest.raises(ConfigError) as info:
        check_command_line(["model=unett"])
    message = str(info.value)
    assert "'unett'" in message and "'model'" in message and "unet" in message.split("Valid choices:")[1]


def test_misspelled_key_names_valid_keys():
    with pytest.raises(ConfigError) as info:
        check_command_line(["optimizer.lrr=1e-3"])
    message = str(info.value)
    assert "optimizer.lrr" in message
    assert "lr" in message.split("Valid keys there:")[1] and "weight_decay" in message
    assert "Did you mean 'lr'?" in message


def test_sweep_values_are_checked_too():
    with pytest.raises(ConfigError, match="'adamm'"):
        check_command_line(["optimizer=adam,adamm"])
    check_command_line(["optimizer=adam,sgd", "optimizer.lr=0.1,0.01", "loss.class_weights=[1,1],[1,5]"])
    # an Optuna search space: the choices are checked, the interval is the sweeper's to sample
    assert check_command_line(
        ["-m", "optimizer.lr=tag(log, interval(1e-4, 1e-2))", "optimizer=choice(adam, sgd)"]
    )
    with pytest.raises(ConfigError, match="'adamm'"):
        check_command_line(["-m", "optimizer.lr=interval(1e-4, 1e-2)", "optimizer=choice(adam, adamm)"])


def test_keys_of_the_chosen_option_are_valid():
    check_command_line(["optimizer=sgd", "optimizer.momentum=0.8"])
    with pytest.raises(ConfigError, match="momentum"):
        check_command_line(["optimizer=adam", "optimizer.momentum=0.8"])


def test_cli_typo_fails_before_any_work(tmp_path):
    result = run_cli(["model=unett"], cwd=tmp_path, timeout=120)
    assert result.returncode == 2
    assert "Unknown option 'unett' for config group 'model'" in result.stderr
    assert not (tmp_path / "outputs").exists()
    result = run_cli(["optimizer.lrr=1e-3"], cwd=tmp_path, timeout=120)
    assert result.returncode == 2
    assert "Unknown config key 'optimizer.lrr'" in result.stderr
    assert not (tmp_path / "outputs").exists()


def test_cli_unwritable_output_location_fails_before_any_work(tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    result = run_cli([f"paths.output_root={blocker / 'runs'}"], cwd=tmp_path, timeout=120)
    assert result.returncode == 2
    assert (
        f"Cannot write runs to '{blocker / 'runs'}" in result.stderr and "is not a directory" in result.stderr
    )
    result = run_cli(["-m", f"hydra.sweep.dir={blocker / 'sweep'}", "seed=1,2"], cwd=tmp_path, timeout=120)
    assert result.returncode == 2 and "Cannot write runs" in result.stderr


def test_config_is_found_from_any_working_directory(tmp_path):
    result = run_cli(["--cfg", "job", *FAST], cwd=tmp_path, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "arch: unet" in result.stdout and "specs:" in result.stdout


def test_isbi_unet_experiment_is_the_u_net_paper_setup(tmp_path):
    cfg = compose_config(["experiment=isbi_unet", f"data.root={write_isbi(tmp_path / 'isbi', size=64)}"])
    assert cfg.data._target_ == "cellseg.data.sources.isbi.IsbiDataModule" and cfg.monitor == "val/v_rand"
    assert (cfg.model.arch, cfg.model.padding, cfg.model.batch_norm, cfg.model.init) == (
        "unet_classic",
        "valid",
        False,
        "he",
    )
    assert cfg.loss._target_.endswith("UNetWeightedCrossEntropyLoss") and cfg.loss.w0 == 10.0
    assert cfg.augmentation._target_.endswith("elastic") and cfg.channels.specs == ["em"]
    datamodule = build_datamodule(cfg)
    assert datamodule.has_split("val") and "isbi" in datamodule.eval_metrics
