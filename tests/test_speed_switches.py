"""Speed switches: ``trainer.precision=mixed`` picks bf16 where the GPU has it, ``model.channels_last``
and ``compile=true`` train on CPU too, and a failing torch.compile falls back to eager with a warning."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from cellseg.build import resolve_precision
from cellseg.inference.checkpoint import load_model, read_checkpoint
from cellseg.models import create_model
from cellseg.training import train
from tests.conftest import TINY, compose_config


@pytest.mark.parametrize(
    ("cuda", "bf16", "expected"), [(True, True, "bf16-mixed"), (True, False, "16-mixed")]
)
def test_mixed_precision_is_bf16_where_the_gpu_has_it(monkeypatch, cuda, bf16, expected):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: bf16)
    assert resolve_precision("mixed") == expected
    assert resolve_precision("32") == "32" and resolve_precision("bf16-mixed") == "bf16-mixed"


def test_channels_last_weights_train_a_step_and_reload(tmp_path: Path):
    net = create_model("unet_classic", in_channels=3, classes=2, init_features=4, depth=2, channels_last=True)
    conv = next(m for m in net.modules() if isinstance(m, torch.nn.Conv2d))
    assert conv.weight.is_contiguous(memory_format=torch.channels_last)
    train(compose_config([*TINY, "model.channels_last=true"], run_dir=tmp_path / "run"))
    loaded = load_model(tmp_path / "run" / "checkpoints" / "last.ckpt")
    assert loaded.hparams["model"]["channels_last"] is True
    assert loaded.net(torch.rand(1, 3, 32, 32)).shape == (1, 2, 32, 32)


@pytest.mark.slow  # torch.compile's first pass: about a minute on 2 cores
def test_compiled_network_trains_a_step_and_saves_plain_weights(tmp_path: Path):
    train(compose_config([*TINY, "compile=true"], run_dir=tmp_path / "run"))
    weights = read_checkpoint(tmp_path / "run" / "checkpoints" / "last.ckpt")["state_dict"]
    assert weights and all(not name.startswith("_compiled") and "_orig_mod" not in name for name in weights)


def test_a_failing_compile_falls_back_to_eager_with_a_warning(tmp_path: Path, monkeypatch):
    def broken(net, *args, **kwargs):
        def run(x):
            raise RuntimeError("inductor needs a C++ compiler\nmore detail")

        return run

    monkeypatch.setattr(torch, "compile", broken)
    with pytest.warns(
        UserWarning, match=r"torch\.compile failed \(RuntimeError: inductor needs a C\+\+ compiler\)"
    ):
        train(compose_config([*TINY, "compile=true"], run_dir=tmp_path / "run"))
    assert (tmp_path / "run" / "checkpoints" / "last.ckpt").is_file()
