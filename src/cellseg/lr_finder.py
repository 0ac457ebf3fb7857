"""The learning-rate range test (Smith 2017; seed 001's ``lr_find``) with Lightning's tuner, its plot and
its record: ``python -m cellseg.lr_find`` and ``optimizer.lr=auto`` of ``python -m cellseg.train``."""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
from matplotlib.figure import Figure
from omegaconf import DictConfig
from pytorch_lightning.tuner import Tuner

from cellseg.errors import ConfigError
from cellseg.utils.io import atomic_path, write_json_atomic

log = logging.getLogger(__name__)

MODES = ("exponential", "linear")
#: Lightning's suggestion skips the first 10 points and the last; below this too few remain.
MIN_STEPS = 20


@dataclass(frozen=True)
class LRFindSettings:
    """The ``lr_find`` config block."""

    min_lr: float = 1e-7
    max_lr: float = 1.0
    num_training: int = 100
    mode: str = "exponential"
    early_stop_threshold: float | None = 4.0

    def __post_init__(self) -> None:
        if not (0 < self.min_lr < self.max_lr):
            raise ConfigError(
                f"lr_find.min_lr={self.min_lr} and lr_find.max_lr={self.max_lr}: need 0 < min_lr < max_lr."
            )
        if self.num_training < MIN_STEPS:
            raise ConfigError(
                f"lr_find.num_training must be >= {MIN_STEPS} steps (the suggestion skips the first 10 "
                f"points of the curve), got {self.num_training}."
            )
        if self.mode not in MODES:
            raise ConfigError(f"lr_find.mode is '{self.mode}'; expected one of {', '.join(MODES)}.")


@dataclass(frozen=True)
class LRFindResult:
    learning_rates: list[float]
    losses: list[float]
    suggestion: float | None
    settings: LRFindSettings

    def as_dict(self) -> dict[str, Any]:
        return {
            "suggestion": self.suggestion,
            "settings": asdict(self.settings),
            "learning_rates": self.learning_rates,
            "losses": self.losses,
        }


def find_learning_rate(
    trainer: pl.Trainer,
    module: pl.LightningModule,
    datamodule: pl.LightningDataModule,
    settings: LRFindSettings,
) -> LRFindResult:
    """Run the range test on ``trainer`` (Lightning restores the module's weights afterwards).

    Lightning bounds the test by ``num_training`` steps but also by ``max_epochs``; on a small data set
    (few steps per epoch) that would end it after an epoch, so the epoch bound is lifted meanwhile.
    """
    max_epochs = trainer.fit_loop.max_epochs
    trainer.fit_loop.max_epochs = max(max_epochs or 1, settings.num_training)
    try:
        finder = Tuner(trainer).lr_find(
            module,
            datamodule=datamodule,
            min_lr=settings.min_lr,
            max_lr=settings.max_lr,
            num_training=settings.num_training,
            mode=settings.mode,
            early_stop_threshold=settings.early_stop_threshold,
            update_attr=False,
        )
    finally:
        trainer.fit_loop.max_epochs = max_epochs
    if finder is None:
        raise ConfigError(
            "The learning-rate range test did not run (fast_dev_run?); set optimizer.lr yourself."
        )
    learning_rates = [float(x) for x in finder.results["lr"]]
    losses = [float(x) for x in finder.results["loss"]]
    suggestion = finder.suggestion()
    return LRFindResult(learning_rates, losses, float(suggestion) if suggestion else None, settings)


def set_learning_rate(module: pl.LightningModule, lr: float) -> None:
    """The rate ``configure_optimizers`` builds the optimizer with (the module's optimizer config)."""
    module.hparams.optimizer = {**module.hparams.optimizer, "lr": lr}


def is_auto(optimizer_config: Mapping[str, Any]) -> bool:
    return str(optimizer_config.get("lr")) == "auto"


def plot_lr_find(result: LRFindResult, path: Path) -> Path:
    """Loss against learning rate (log axis), the suggestion marked."""
    figure = Figure(figsize=(6, 4))
    plot = figure.add_subplot()
    finite = [
        (lr, loss)
        for lr, loss in zip(result.learning_rates, result.losses, strict=True)
        if math.isfinite(loss)
    ]
    plot.plot([p[0] for p in finite], [p[1] for p in finite], color="#4c72b0")
    if result.suggestion is not None:
        nearest = min(finite, key=lambda p: abs(math.log(p[0]) - math.log(result.suggestion)))
        plot.scatter(
            [nearest[0]],
            [nearest[1]],
            s=60,
            color="#c44e52",
            zorder=3,
            label=f"suggestion {result.suggestion:.2e}",
        )
        plot.legend()
    plot.set_xscale("log")
    plot.set_xlabel("learning rate")
    plot.set_ylabel("training loss (smoothed)")
    plot.set_title("learning-rate range test", fontsize=10)
    figure.tight_layout()
    with atomic_path(path) as tmp:
        figure.savefig(tmp, format="png", dpi=110)
    return path


def write_lr_find(result: LRFindResult, folder: Path, command: str | None) -> dict[str, Path]:
    """``lr_find.json`` (the curve, the suggestion, the command that uses it) and ``lr_find.png``."""
    paths = {"json": folder / "lr_find.json", "png": folder / "lr_find.png"}
    write_json_atomic(paths["json"], {**result.as_dict(), "command": command})
    plot_lr_find(result, paths["png"])
    return paths


def learning_rate_for_run(
    cfg: DictConfig, trainer: pl.Trainer, module: pl.LightningModule, datamodule: Any, ckpt_path: str | None
) -> dict[str, Any]:
    """optimizer.lr=auto: the range test's suggestion becomes the rate; returns what metrics.json records."""
    if ckpt_path is not None:
        raise ConfigError("optimizer.lr=auto cannot resume a run: pass the rate the run was found with.")
    settings = LRFindSettings(**cfg.lr_find)
    set_learning_rate(module, settings.min_lr)  # a number to build the optimizer with; the test sets its own
    found = find_learning_rate(trainer, module, datamodule, settings)
    if found.suggestion is None:
        raise ConfigError(
            "optimizer.lr=auto: the range test found no falling loss to suggest a rate from; widen "
            "lr_find.min_lr/max_lr, raise lr_find.num_training, or set optimizer.lr."
        )
    set_learning_rate(module, found.suggestion)
    if trainer.is_global_zero:
        write_lr_find(found, Path(cfg.paths.run_dir), None)
    log.info("optimizer.lr=auto: training with the range test's suggestion %.3g", found.suggestion)
    return {"suggestion": found.suggestion, "settings": found.as_dict()["settings"]}
