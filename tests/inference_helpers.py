"""Checkpoints written directly (no training) for prediction tests that only need the file format."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
from torch import nn

from cellseg.inference.checkpoint import LoadedModel, load_model
from cellseg.module import SegmentationModule

TINY_UNET = {"arch": "unet_classic", "depth": 2, "init_features": 4}


def write_checkpoint(
    path: Path,
    channel_names: Sequence[str] = ("em",),
    specs: Sequence[object] = ("em",),
    class_names: Sequence[str] = ("background", "cell"),
    model: dict | None = None,
    data: dict | None = None,
    target: dict | None = None,
    regression_names: Sequence[str] = (),
    normalization: dict | None = None,
    scale: float | None = None,
) -> Path:
    """An untrained cellseg checkpoint with the keys Lightning writes (state_dict, hyper_parameters)."""
    pipeline = {
        "source": "test",
        "channel_names": list(channel_names),
        "channels": list(specs),
        "normalization": normalization
        or {"method": "percentile", "low": 1.0, "high": 99.8, "clip": True, "mean": None, "std": None},
        "target": target or {"kind": "BinaryTarget", "class_names": list(class_names), "ignore_index": -100},
        "class_names": list(class_names),
        "crop_size": 64,
    }
    if data is not None:
        pipeline["data"] = data
    if scale is not None:
        pipeline["scale"] = scale
    torch.manual_seed(0)
    module = SegmentationModule(
        model=model or TINY_UNET,
        loss={"_target_": "cellseg.losses.CrossEntropyLoss"},
        optimizer={"_target_": "torch.optim.Adam", "_partial_": True, "lr": 1e-3},
        in_channels=len(specs),
        class_names=list(class_names),
        pipeline=pipeline,
        regression_names=list(regression_names),
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(
        {
            "state_dict": module.state_dict(),
            "hyper_parameters": dict(module.hparams),
            "epoch": 0,
            "global_step": 0,
        },
        path,
    )
    return path


class PassThrough(nn.Module):
    """A 'network' whose output is its input: the test image holds the outputs it should predict."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.clone()


def pass_through_model(target: object, folder: Path, scale: float | None = None) -> LoadedModel:
    """A loaded checkpoint of ``target`` (its output channels as the input channels) whose network is
    :class:`PassThrough`: the model input given to a Predictor is the output it blends and decodes."""
    names = list(target.outputs.channel_names)
    ckpt = write_checkpoint(
        folder / "ckpt.ckpt",
        channel_names=names,
        specs=names,
        target=target.describe(),
        regression_names=target.regression_names,
        scale=scale,
    )
    model = load_model(ckpt)
    model.net = PassThrough()
    return model
