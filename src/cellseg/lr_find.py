"""``python -m cellseg.lr_find``: Lightning's learning-rate range test on the configured model and data.

    python -m cellseg.lr_find                         (any training override: model=..., data=..., ...)
    python -m cellseg.lr_find optimizer=sgd lr_find.num_training=200

Writes ``lr_find.png`` (loss against learning rate, the suggestion marked) and ``lr_find.json`` to
``outputs/lr_find/<date>_<time>/`` and prints the suggestion with the training command that uses it.
``python -m cellseg.train optimizer.lr=auto`` runs the same test first and trains with its suggestion.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import hydra
import pytorch_lightning as pl
from hydra.utils import instantiate
from omegaconf import DictConfig

from cellseg.build import build_training, resolve_precision
from cellseg.cli import exit_on_bad_input, run_command
from cellseg.config import config_dir
from cellseg.hparams import hydra_runtime
from cellseg.lr_finder import LRFindSettings, find_learning_rate, set_learning_rate, write_lr_find
from cellseg.utils.logs import route_lightning_logs

log = logging.getLogger(__name__)


def training_command(overrides: list[str], lr: float) -> str:
    """The training command line of these overrides, with the found rate instead of any other."""
    kept = [o for o in overrides if not o.startswith(("optimizer.lr=", "lr_find."))]
    return " ".join(["python -m cellseg.train", *kept, f"optimizer.lr={lr:.3g}"])


def lr_find(cfg: DictConfig) -> dict[str, Any]:
    route_lightning_logs()
    run_dir = Path(cfg.paths.run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    pl.seed_everything(cfg.seed, workers=True)
    settings = LRFindSettings(**cfg.lr_find)
    datamodule, module = build_training(cfg)
    set_learning_rate(module, settings.min_lr)  # the range test sets its own rates
    trainer = instantiate(
        cfg.trainer,
        precision=resolve_precision(cfg.trainer.precision),
        callbacks=[],
        logger=False,
        enable_checkpointing=False,
    )
    found = find_learning_rate(trainer, module, datamodule, settings)
    command = (
        None if found.suggestion is None else training_command(hydra_runtime()["overrides"], found.suggestion)
    )
    paths = write_lr_find(found, run_dir, command)
    if found.suggestion is None:
        log.warning(
            "No suggestion: the loss never fell steadily; widen lr_find.min_lr/max_lr. See %s", paths["png"]
        )
    else:
        log.info("Suggested learning rate: %.3g (plot: %s)\n  %s", found.suggestion, paths["png"], command)
    return {**found.as_dict(), "command": command}


@hydra.main(version_base="1.3", config_path=str(config_dir()), config_name="lr_find")
def _hydra_main(cfg: DictConfig) -> None:
    exit_on_bad_input(lr_find)(cfg)


def main() -> None:
    run_command("lr_find", _hydra_main, new_folder=True)


if __name__ == "__main__":
    main()
