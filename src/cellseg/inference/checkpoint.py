"""Rebuilding a trained network and its data pipeline from a checkpoint file alone.

A cellseg checkpoint stores the resolved model config, the class names and the data pipeline
(channel names, channel specs, normalisation, target) as plain hyperparameters, so prediction needs
neither the run directory nor its config files.
"""

from __future__ import annotations

import pickle
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from cellseg.data.pipeline.targets import Target, target_from_description
from cellseg.errors import CellsegError, CheckpointNotFoundError
from cellseg.inference.legacy import current_targets
from cellseg.outputs import OutputLayout, layout_of_hparams

#: Hyperparameters without which a checkpoint cannot be turned back into a predictor.
REQUIRED_HPARAMS = ("model", "in_channels", "class_names", "pipeline")


class CheckpointError(CellsegError, ValueError):
    """A file that is not a (complete) cellseg checkpoint."""


@dataclass
class LoadedModel:
    """A network in eval mode with everything needed to feed it new images."""

    net: nn.Module
    pipeline: dict[str, Any]
    class_names: tuple[str, ...]
    in_channels: int
    path: Path
    hparams: dict[str, Any]
    epoch: int | None = None
    global_step: int = 0

    @property
    def channel_names(self) -> tuple[str, ...]:
        """Names of the source image's planes the checkpoint was trained on, in order."""
        return tuple(self.pipeline["channel_names"])

    @property
    def scale(self) -> float:
        """The factor the training images were resized by (``data.scale``; 1.0 in older checkpoints)."""
        return float(self.pipeline.get("scale", 1.0))

    @property
    def layout(self) -> OutputLayout:
        """The network's output channels: class logits, then regression maps."""
        return layout_of_hparams(self.hparams)

    @property
    def target(self) -> Target:
        """The labeling strategy the network learned, with the checkpoint's decoding settings: those tuned
        on validation (``decoding`` in the checkpoint) over the target's configured ones."""
        return target_from_description(self.pipeline["target"], self.hparams.get("decoding"))


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """The checkpoint's contents (``weights_only=True``), or a CheckpointError saying what is wrong."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise CheckpointNotFoundError(
            f"ckpt '{path}' does not exist; pass a checkpoint of a training run, "
            "e.g. ckpt=outputs/train/<date>_<time>/checkpoints/best.ckpt."
        )
    try:
        # Memory-mapped: tensors are read when used, so checking a checkpoint before a command starts
        # costs milliseconds, not a read of the whole file (hundreds of MB for a 64-feature U-Net).
        checkpoint = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except (zipfile.BadZipFile, EOFError, OSError, RuntimeError, pickle.UnpicklingError) as error:
        raise CheckpointError(
            f"{path}: cannot be read as a PyTorch checkpoint; it is truncated, corrupt or not a "
            f"checkpoint ({type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''})."
        ) from error
    if not isinstance(checkpoint, dict) or "state_dict" not in checkpoint:
        raise CheckpointError(
            f"{path}: is not a Lightning checkpoint (no 'state_dict'); cellseg predicts with the "
            "checkpoints its training runs write (checkpoints/best.ckpt, last.ckpt)."
        )
    hparams = checkpoint.get("hyper_parameters") or {}
    missing = [key for key in REQUIRED_HPARAMS if not hparams.get(key)]
    if missing:
        raise CheckpointError(
            f"{path}: is a Lightning checkpoint but not one written by cellseg (its hyperparameters "
            f"lack {', '.join(missing)}); train with python -m cellseg.train to get a self-contained one."
        )
    return checkpoint


def _offline_model_config(model: dict[str, Any]) -> dict[str, Any]:
    """The model config without pretrained-weight downloads: the checkpoint holds the trained weights."""
    config = dict(model)
    if config.get("encoder_weights") is not None:
        config["encoder_weights"] = None
    return config


def load_model(path: str | Path, device: str | torch.device = "cpu") -> LoadedModel:
    """The trained network (eval mode, on ``device``) and its pipeline from a cellseg checkpoint."""
    from cellseg.models import create_model

    path = Path(path).expanduser()
    checkpoint = read_checkpoint(path)
    hparams = current_targets(dict(checkpoint["hyper_parameters"]))
    class_names = tuple(hparams["class_names"])
    in_channels = int(hparams["in_channels"])
    net = create_model(
        in_channels=in_channels,
        classes=layout_of_hparams(hparams).num_channels,
        **_offline_model_config(hparams["model"]),
    )
    prefix = "net."
    weights = {k[len(prefix) :]: v for k, v in checkpoint["state_dict"].items() if k.startswith(prefix)}
    try:
        net.load_state_dict(weights)
    except RuntimeError as error:
        raise CheckpointError(
            f"{path}: its weights do not fit the model it describes ({str(error).splitlines()[0]})."
        ) from error
    net.eval().to(device)
    return LoadedModel(
        net,
        dict(hparams["pipeline"]),
        class_names,
        in_channels,
        path.resolve(),
        hparams,
        checkpoint.get("epoch"),
        int(checkpoint.get("global_step", 0)),
    )
