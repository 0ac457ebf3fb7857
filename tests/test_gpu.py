"""Mixed-precision and multi-GPU training on CUDA; skipped on machines without a GPU (such as CI)."""

from __future__ import annotations

import math

import pytest
import torch

from cellseg.training import train
from tests.conftest import FAST, compose_config, run_cli

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU"),
]


@pytest.mark.parametrize("precision", ["16-mixed", "bf16-mixed", "32"])
def test_gpu_training_in_each_precision(precision, tmp_path):
    if precision == "bf16-mixed" and not torch.cuda.is_bf16_supported():
        pytest.skip("this GPU has no bf16")
    cfg = compose_config([*FAST, "trainer=gpu", f"trainer.precision={precision}"], run_dir=tmp_path / "run")
    summary = train(cfg)
    assert summary["status"] == "completed"
    assert math.isfinite(summary["final"]["val/loss"])
    assert "test/dice" in summary["test"]


@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs two GPUs")
def test_ddp_on_two_gpus_writes_one_run_directory(tmp_path):
    result = run_cli(
        [*FAST, "trainer=ddp", "trainer.devices=2", f"hydra.run.dir={tmp_path / 'ddp'}"], cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert [p.name for p in tmp_path.iterdir()] == ["ddp"]


def test_tiled_prediction_on_gpu_with_amp_matches_cpu(trained_run):
    """AMP (bf16 or fp16) tiles on the GPU give the CPU's fp32 classes almost everywhere."""
    import numpy as np

    from cellseg.data.sources.synthetic_cells import SyntheticCellsParams, generate_cells
    from cellseg.inference import Predictor, TileSettings

    image = generate_cells(1, 7, "test", SyntheticCellsParams(size=300))[0][0]
    ckpt = trained_run / "checkpoints" / "best.ckpt"
    tiles = TileSettings(size=128, overlap=0.25)
    cpu = Predictor.from_checkpoint(ckpt, tiles=tiles, device="cpu").probabilities(image)
    gpu = Predictor.from_checkpoint(ckpt, tiles=tiles, device="cuda", amp=True)
    assert gpu.amp
    amp = gpu.probabilities(image)
    assert amp.dtype == np.float32 and np.abs(amp - cpu).mean() < 1e-2
    assert (amp.argmax(0) == cpu.argmax(0)).mean() > 0.995
