"""What a training run logs as its hyperparameters (TensorBoard's HPARAMS tab, CSV's hparams.yaml):
the group choices, the command line, the sweepable settings and the model's size and cost."""

from __future__ import annotations

import math
from typing import Any

import pytorch_lightning as pl
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf
from pytorch_lightning.loggers import TensorBoardLogger

from cellseg.models.stats import model_stats
from cellseg.stage_metrics import MAIN_SCORES


def hydra_runtime() -> dict[str, Any]:
    """Group choices and command-line overrides of this job (empty when Hydra is not running it)."""
    if not HydraConfig.initialized():
        return {"choices": {}, "overrides": []}
    hydra_cfg = HydraConfig.get()
    choices = {k: v for k, v in hydra_cfg.runtime.choices.items() if not k.startswith("hydra")}
    return {"choices": choices, "overrides": list(hydra_cfg.overrides.task)}


def _flat(prefix: str, node: Any) -> dict[str, Any]:
    """Flat ``a/b`` keys with scalar values, as TensorBoard's hparams table wants them."""
    if isinstance(node, dict):
        out: dict[str, Any] = {}
        for key, value in node.items():
            if key != "_partial_":
                out.update(_flat(f"{prefix}/{key}" if prefix else str(key), value))
        return out
    return {prefix: node if isinstance(node, (int, float, str, bool)) else str(node)}


def log_hyperparameters(
    trainer: pl.Trainer, cfg: DictConfig, module: pl.LightningModule, runtime: dict
) -> None:
    """Config choices, sweepable settings and model size to every logger (TensorBoard's hparams tab).

    ``model/mult_adds`` is the cost of one image at the training size (crop, else image size), from one
    hooked forward pass (the hooks are removed after it).
    """
    size = cfg.data.get("crop_size") or cfg.data.get("size")
    in_channels = module.hparams.get("in_channels")
    cost = {}
    if size and in_channels and hasattr(module, "net"):
        cost = {
            "model/mult_adds": model_stats(module.net, [int(in_channels), int(size), int(size)]).mult_adds,
            "model/input_size": int(size),
        }
    sections = {
        k: OmegaConf.to_container(cfg[k], resolve=True) for k in ("model", "loss", "optimizer", "scheduler")
    }
    params = {
        **_flat("choice", runtime["choices"]),
        **_flat("", sections),
        "seed": cfg.seed,
        "data/batch_size": cfg.data.batch_size,
        "trainer/max_epochs": cfg.trainer.max_epochs,
        "trainer/precision": str(cfg.trainer.precision),
        "model/params_total": sum(p.numel() for p in module.parameters()),
        "model/params_trainable": sum(p.numel() for p in module.parameters() if p.requires_grad),
        **cost,
    }
    for logger in trainer.loggers:
        if isinstance(logger, TensorBoardLogger):  # the hparams tab needs its metric declared up front
            logger.log_hyperparams(params, metrics=dict.fromkeys(hparams_metric_names(cfg), math.nan))
        else:
            logger.log_hyperparams(params)


def hparams_metric_names(cfg: DictConfig) -> list[str]:
    """``hp/best_<m>`` and ``hp/final_<m>`` for the monitor and the usual scores (deduplicated)."""
    names = list(dict.fromkeys([cfg.monitor, *MAIN_SCORES]))
    return [f"hp/{stage}_{name}" for name in names for stage in ("best", "final")]


def hparams_metrics(
    cfg: DictConfig, best: dict[str, Any] | None, final: dict[str, Any] | None
) -> dict[str, float]:
    """The values of :func:`hparams_metric_names` that the run logged, from its best and final epochs."""
    wanted = set(hparams_metric_names(cfg))
    values = {}
    for stage, entry in (("best", best), ("final", final)):
        for name, value in (entry or {}).items():
            key = f"hp/{stage}_{name}"
            if key in wanted and isinstance(value, (int, float)) and math.isfinite(value):
                values[key] = float(value)
    return values
