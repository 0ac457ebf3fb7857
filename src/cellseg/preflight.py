"""What ``cellseg.train`` checks before any work: the values it trains with, the metric it monitors and
the checkpoint it resumes from, each refused with one line that names the key and what was expected."""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from typing import Any

from omegaconf import DictConfig

from cellseg.config import is_number
from cellseg.errors import ConfigError
from cellseg.inference.checkpoint import CheckpointError, read_checkpoint
from cellseg.module import SegmentationModule
from cellseg.outputs import layout_of_hparams
from cellseg.runs import check_checkpoint

#: What only a checkpoint written during training holds (predict's weights need none of it).
TRAINING_STATE = ("optimizer_states", "loops", "epoch")


def _is_integer(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def check_training_values(cfg: DictConfig) -> None:
    """Values that would otherwise fail deep inside Lightning or torch, after data was prepared."""
    lr = cfg.optimizer.get("lr")
    if lr != "auto" and not (is_number(lr) and lr > 0):
        raise ConfigError(
            f"optimizer.lr={lr}: expected a positive number (e.g. 1e-3), or auto for the LR finder."
        )
    decay = cfg.optimizer.get("weight_decay")
    if decay is not None and not (is_number(decay) and decay >= 0):
        raise ConfigError(f"optimizer.weight_decay={decay}: expected a number >= 0.")
    epochs = cfg.trainer.get("max_epochs")
    if epochs is not None and not (_is_integer(epochs) and (epochs >= 1 or epochs == -1)):
        raise ConfigError(f"trainer.max_epochs={epochs}: expected a whole number >= 1 (or -1: no limit).")
    if not _is_integer(cfg.seed):
        raise ConfigError(f"seed={cfg.seed}: expected a whole number, e.g. seed=1.")
    batch_size = cfg.data.get("batch_size")
    if batch_size is not None and not (_is_integer(batch_size) and batch_size >= 1):
        raise ConfigError(f"data.batch_size={batch_size}: expected a whole number >= 1.")
    if cfg.monitor_mode not in ("min", "max"):
        raise ConfigError(f"monitor_mode={cfg.monitor_mode}: expected min or max.")


def logged_metrics(module: SegmentationModule) -> list[str]:
    """Every epoch metric the module logs (``val/dice``, ``train/loss``, ...), known before training."""
    return [
        f"{stage}/{name}"
        for stage, key in (("val", "val"), ("train", "fit"))
        for name in module.stage_metrics[key].names()
    ]


def check_monitor(monitor: str, module: SegmentationModule) -> None:
    """The monitored metric must be one the run logs: otherwise the first epoch ends in an error."""
    logged = logged_metrics(module)
    if monitor in logged or monitor.startswith("train/loss_"):  # the terms of a composite loss
        return
    close = difflib.get_close_matches(monitor, logged, n=1)
    validation = ", ".join(m for m in logged if m.startswith("val/"))
    raise ConfigError(
        f"monitor={monitor}: this run logs no such metric"
        + (f"; did you mean {close[0]}?" if close else ".")
        + f" Validation metrics it logs: {validation}."
    )


def read_resume_checkpoint(ckpt_path: str | None) -> tuple[str, dict[str, Any]] | None:
    """The resume checkpoint's path and contents, checked as predict checks its checkpoint, plus that it
    holds the training state (optimizer, loops) that resuming needs. None when not resuming."""
    path = check_checkpoint(ckpt_path)
    if path is None:
        return None
    checkpoint = read_checkpoint(path)
    missing = [key for key in TRAINING_STATE if key not in checkpoint]
    if missing:
        raise CheckpointError(
            f"ckpt_path '{path}': holds weights but no training state ({', '.join(missing)}); resume "
            "from a run's checkpoints/last.ckpt, or start a new run."
        )
    return path, checkpoint


def _differences(saved: Mapping[str, Any], configured: Mapping[str, Any]) -> list[str]:
    keys = sorted(set(saved) | set(configured))
    return [
        f"{k}: {saved.get(k)!r} in the checkpoint, {configured.get(k)!r} now"
        for k in keys
        if saved.get(k) != configured.get(k)
    ]


def check_resume_fits(
    path: str, checkpoint: Mapping[str, Any], module: SegmentationModule, max_epochs: int | None
) -> None:
    """The checkpoint must be of the configured network, channels and classes, with epochs left to train."""
    saved = checkpoint["hyper_parameters"]
    configured = module.hparams
    if int(saved["in_channels"]) != int(configured["in_channels"]):
        raise CheckpointError(
            f"ckpt_path '{path}': was trained on {saved['in_channels']} input channel(s) "
            f"({', '.join(saved['pipeline'].get('channel_names') or [])}); the configured channels give "
            f"{configured['in_channels']}. Resume with the channels= the run was started with."
        )
    saved_outputs, configured_outputs = layout_of_hparams(saved), layout_of_hparams(configured)
    if saved_outputs != configured_outputs:
        raise CheckpointError(
            f"ckpt_path '{path}': predicts {', '.join(saved_outputs.channel_names)}; the configured target "
            f"gives {', '.join(configured_outputs.channel_names)}. Resume with the target= the run was "
            "started with."
        )
    model_changes = _differences(dict(saved["model"]), dict(configured["model"]))
    if model_changes:
        raise CheckpointError(
            f"ckpt_path '{path}': is of another network ({'; '.join(model_changes)}). "
            "Resume with the model= settings the run was started with."
        )
    trained = int(checkpoint["epoch"]) + 1
    if max_epochs is not None and max_epochs != -1 and max_epochs < trained:
        raise ConfigError(
            f"trainer.max_epochs={max_epochs}: ckpt_path '{path}' has already trained {trained} epoch(s), "
            f"so nothing would be trained; pass trainer.max_epochs greater than {trained} to train on."
        )
