"""Seed 001's schedule: the encoder is frozen, then trained with discriminative learning rates."""

from __future__ import annotations

import math

import pytest
import pytorch_lightning as pl
import torch
from torch.optim.lr_scheduler import OneCycleLR
from torch.utils.data import DataLoader, TensorDataset

from cellseg.callbacks import EncoderFinetuning
from cellseg.callbacks.finetune import discriminative_lrs
from cellseg.errors import ConfigError
from cellseg.models import create_model
from cellseg.models.encoders import unwrap
from cellseg.training import train
from tests.conftest import FAST, compose_config

LR = 1e-2


class TinySegmenter(pl.LightningModule):
    """A ResNet18 U-Net on random 32 x 32 images; records what the encoder does each epoch."""

    def __init__(self, one_cycle: bool = False) -> None:
        super().__init__()
        self.net = create_model("unet", 1, 2, encoder="resnet18", decoder_channels=[16, 16, 16, 16, 16])
        self.one_cycle = one_cycle
        self.epochs: list[dict] = []

    def training_step(self, batch, batch_idx):
        x, y = batch
        return torch.nn.functional.cross_entropy(self.net(x), y)

    def on_train_epoch_start(self) -> None:
        encoder = unwrap(self.net).encoder
        self.epochs.append(
            {
                "requires_grad": {
                    p.requires_grad
                    for m in encoder.modules()
                    if isinstance(m, torch.nn.Conv2d)
                    for p in m.parameters()
                },
                "weights": encoder.layer4[0].conv1.weight.detach().clone(),
                "lrs": [g["lr"] for g in self.trainer.optimizers[0].param_groups],
                "peaks": [g.get("max_lr") for g in self.trainer.optimizers[0].param_groups],
                "cycle_steps": getattr(self.trainer.lr_scheduler_configs[0].scheduler, "total_steps", None)
                if self.trainer.lr_scheduler_configs
                else None,
            }
        )

    def configure_optimizers(self):
        optimizer = torch.optim.SGD(self.parameters(), lr=LR, momentum=0.9)
        if not self.one_cycle:
            return optimizer
        steps = int(self.trainer.estimated_stepping_batches)
        scheduler = OneCycleLR(optimizer, max_lr=LR, total_steps=steps, pct_start=0.3)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}


def _fit(module: pl.LightningModule, callback: EncoderFinetuning, epochs: int) -> pl.Trainer:
    generator = torch.Generator().manual_seed(0)
    data = TensorDataset(
        torch.randn(8, 1, 32, 32, generator=generator), torch.randint(0, 2, (8, 32, 32), generator=generator)
    )
    trainer = pl.Trainer(
        max_epochs=epochs,
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[callback],
    )
    trainer.fit(module, DataLoader(data, batch_size=4))
    return trainer


def test_encoder_frozen_then_trained_with_discriminative_lrs():
    module = TinySegmenter()
    _fit(module, EncoderFinetuning(freeze_epochs=2, restart_one_cycle=False), epochs=3)
    first, second, third = module.epochs
    assert first["requires_grad"] == {False} and second["requires_grad"] == {False}
    assert torch.equal(first["weights"], second["weights"])  # frozen for 2 epochs
    assert third["requires_grad"] == {True}
    assert not torch.equal(
        third["weights"], unwrap(module.net).encoder.layer4[0].conv1.weight
    )  # trained after
    assert first["lrs"] == [LR]  # only the decoder (and the encoder's BN) in the optimizer
    # decoder at lr/2, encoder input side at lr/100, deep stages (layer3, layer4) between, geometrically
    assert third["lrs"] == pytest.approx([LR / 2, LR / 100, LR / 100 * math.sqrt(50)])


def test_one_cycle_restarts_for_each_phase_with_per_group_peaks():
    module = TinySegmenter(one_cycle=True)
    trainer = _fit(module, EncoderFinetuning(freeze_epochs=1), epochs=3)
    scheduler = trainer.lr_scheduler_configs[0].scheduler
    assert isinstance(scheduler, OneCycleLR)
    assert scheduler.total_steps == 2 * 2  # the unfrozen phase: 2 epochs of 2 steps
    peaks = [g["max_lr"] for g in scheduler.optimizer.param_groups]
    assert peaks == pytest.approx([LR / 2, LR / 100, LR / 100 * math.sqrt(50)])
    # the frozen phase was a cycle of its own (1 epoch of 2 steps, peak LR); the second starts warm-up
    assert module.epochs[0]["cycle_steps"] == 2 and module.epochs[0]["peaks"] == [LR]
    assert module.epochs[1]["lrs"] == pytest.approx([p / 25 for p in peaks])


def test_discriminative_lrs_are_geometric():
    assert discriminative_lrs(1e-6, 5e-5, 3) == pytest.approx([1e-6, math.sqrt(5e-11), 5e-5])
    assert discriminative_lrs(1e-6, 5e-5, 1) == [5e-5]


def test_bad_settings_and_models_without_encoder_are_rejected():
    with pytest.raises(ConfigError, match="freeze_epochs"):
        EncoderFinetuning(freeze_epochs=0)
    with pytest.raises(ConfigError, match="lr_min_div"):
        EncoderFinetuning(lr_min_div=2, lr_max_div=100)
    module = pl.LightningModule()
    module.net = create_model("deconvnet", 3, 2)
    with pytest.raises(ConfigError, match=r"has no \.encoder"):
        EncoderFinetuning().freeze_before_training(module)


@pytest.mark.slow
def test_seed001_experiment_trains(tmp_path):
    overrides = [o for o in FAST if not o.startswith("trainer.max_epochs")]
    cfg = compose_config(
        [
            "experiment=seed001_schedule",
            *overrides,
            "trainer.max_epochs=2",
            "callbacks.encoder_finetuning.freeze_epochs=1",
            "data.num_train=4",
            "test=false",
        ],
        run_dir=tmp_path / "run",
    )
    assert cfg.model.arch == "unet_pixelshuffle" and cfg.scheduler.max_lr == 1e-4
    summary = train(cfg)
    assert summary["status"] == "completed" and summary["epochs_run"] == 2
