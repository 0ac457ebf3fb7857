"""Shared fixtures: the real config tree, composed as a user's command line would compose it."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig, open_dict

from cellseg.config import config_dir

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO_ROOT.parent / "shared" / "data"

# Small, fast settings for end-to-end runs on a 2-core CPU.
FAST = [
    "data.num_train=8",
    "data.num_val=4",
    "data.num_test=4",
    "data.size=64",
    "data.crop_size=64",
    "data.batch_size=4",
    "model.encoder=resnet18",
    "trainer.max_epochs=1",
    "trainer.enable_progress_bar=false",
    "trainer.num_sanity_val_steps=0",
    "callbacks=minimal",
]

#: FAST with a network small enough that one training step (and torch.compile's first pass) stays short.
TINY = [o for o in FAST if not o.startswith("model.")] + [
    "model=unet_classic",
    "model.init_features=4",
    "model.depth=2",
    "test=false",
    "+trainer.max_steps=1",
    "+trainer.limit_val_batches=1",
]

#: A few steps of the U-Net paper's ISBI setup on ../shared/data/isbi2012 (tests that need a real checkpoint).
TINY_ISBI = [
    "experiment=isbi_unet",
    f"data.root={SHARED_DATA / 'isbi2012'}",
    "model.init_features=8",
    "trainer.max_epochs=1",
    "+trainer.limit_train_batches=3",
    "trainer.enable_progress_bar=false",
]


def compose_config(overrides: Sequence[str] = (), run_dir: Path | None = None) -> DictConfig:
    """The composed training config for ``overrides``, with the run directory set when given."""
    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        cfg = compose(config_name="train", overrides=list(overrides))
    if run_dir is not None:
        with open_dict(cfg):
            cfg.paths.run_dir = str(run_dir)
    return cfg


def run_cli(
    args: Sequence[str],
    cwd: Path,
    timeout: float = 600,
    env: dict | None = None,
    command: str = "cellseg.train",
) -> subprocess.CompletedProcess:
    """Run ``python -m <command>`` (default ``cellseg.train``) as a user would, from ``cwd``."""
    environment = {**os.environ, "PYTHONWARNINGS": "ignore", **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", command, *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=environment,
    )


@pytest.fixture
def fast_overrides() -> list[str]:
    return list(FAST)


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory) -> Path:
    """A synthetic-data run trained well enough (val Dice ~0.97) that its predictions mean something.

    Shared by the prediction, evaluation and export tests. A 16-feature classic U-Net: 20 s on the
    2-core CPU, where FAST's ResNet18 U-Net takes ten times as long at this image size.
    """
    from cellseg.training import train

    run_dir = tmp_path_factory.mktemp("trained") / "run"
    overrides = [
        *(override for override in FAST if not override.startswith("model.")),
        "model=unet_classic",
        "model.init_features=16",
        "data.size=128",
        "data.crop_size=128",
        "data.num_train=32",
        "data.num_val=4",
        "data.num_test=0",
        "trainer.max_epochs=8",
        "logger=tensorboard",
    ]
    train(compose_config(overrides, run_dir=run_dir))
    return run_dir
