"""``python -m cellseg.evaluate``: every metric that fits a data set, on its val or test split, with the
same tiled inference as ``python -m cellseg.predict``.

    python -m cellseg.evaluate ckpt=outputs/train/<run>/checkpoints/best.ckpt split=val
    python -m cellseg.evaluate ckpt=... data=isbi data.root=../shared/data/isbi2012

Without ``data=...`` the data set the checkpoint was trained on is used (its config is stored in the
checkpoint; relative paths are relative to where you start the command). Channels, normalisation and
target always come from the checkpoint. Results go next to the run, in
``<run>/eval/<checkpoint>/<split>_<date>_<time>/``: ``eval.json`` (scores pooled over the split, as in
training), ``per_image.csv`` (one row per image) and TensorBoard scalars in ``<run>/tensorboard/eval``.

``tune=true`` first searches the decoding thresholds of ``target=distance`` / ``target=flows`` that
maximise AP50 on the val split, stores them in the checkpoint (used by predict and evaluate from then on)
and writes every combination tried to ``tuning.csv``; ``decoding.<name>=<value>`` overrides one setting
for this evaluation only. ``postprocess=crf`` scores the probabilities refined by a dense CRF (``crf.*``).
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import hydra
import numpy as np
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from cellseg import __version__
from cellseg.cli import exit_on_bad_input, run_command
from cellseg.config import config_dir
from cellseg.errors import DataError
from cellseg.evaluation import (
    check_decoding_request,
    check_split,
    data_config,
    datamodule_for,
    decoding_overrides,
    log_to_tensorboard,
    prediction_writer,
    score_split,
)
from cellseg.inference.checkpoint import load_model, read_checkpoint
from cellseg.inference.predictor import Predictor
from cellseg.inference.tiling import TileSettings
from cellseg.postprocess import describe_postprocess, postprocess_request
from cellseg.runs import run_dir_of
from cellseg.tuning import tune_and_store
from cellseg.utils.io import write_csv_atomic, write_json_atomic
from cellseg.utils.tables import print_score_table

log = logging.getLogger(__name__)


def _data_given() -> bool:
    """Whether the command line chose a data set (``data=...`` or ``data.<key>=...``)."""
    overrides = HydraConfig.get().overrides.task if HydraConfig.initialized() else []
    return any(o.lstrip("+~").startswith(("data=", "data.")) for o in overrides)


def evaluate(cfg: DictConfig) -> dict[str, Any]:
    """Score the checkpoint on ``split`` and write eval.json, per_image.csv and TensorBoard scalars."""
    started = time.perf_counter()
    check_split(cfg.split)
    postprocess = postprocess_request(cfg, tune=bool(cfg.tune))
    tiles = TileSettings(**OmegaConf.to_container(cfg.tile, resolve=True))
    model = load_model(cfg.ckpt)
    data = data_config(OmegaConf.to_container(cfg.data, resolve=True) if _data_given() else None, model)
    datamodule = datamodule_for(data, model)
    if not datamodule.has_split(cfg.split):
        raise DataError(f"{type(datamodule).__name__} has no '{cfg.split}' split to evaluate on.")
    predictor = Predictor(
        model,
        tiles=tiles,
        tta=cfg.tta,
        device=cfg.device,
        amp=cfg.amp,
        channel_names=datamodule.channel_names,
        postprocess=postprocess,
        scale=1.0,  # the data module resized the images by the checkpoint's scale already
    )
    out_dir = Path(cfg.paths.run_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    target = model.target
    tuning, outputs = None, None
    if cfg.tune:
        tuning, val_outputs = tune_and_store(model.path, predictor, datamodule, target, cfg.progress)
        write_csv_atomic(out_dir / "tuning.csv", tuning.trials)
        target.set_decoding(tuning.settings)
        outputs = val_outputs if cfg.split == "val" else None
    target.set_decoding({**target.decoding, **decoding_overrides(cfg)})
    on_image = (
        prediction_writer(out_dir / "predictions", model.class_names, predictor.layout, target.decode)
        if cfg.save_predictions
        else None
    )
    log.info("Evaluating %s on the %s split of %s", model.path, cfg.split, type(datamodule).__name__)
    scores, rows = score_split(
        predictor, datamodule, cfg.split, cfg.progress, on_image, target.decode, outputs
    )
    step, epoch = model.global_step, model.epoch
    prefixed = {f"{cfg.split}/{k}": v for k, v in scores.items()}
    result = {
        "checkpoint": str(model.path),
        "checkpoint_epoch": epoch,
        "checkpoint_step": step,
        "split": cfg.split,
        "data": data,
        "images": len(rows),
        "scores": prefixed,
        "tile": OmegaConf.to_container(cfg.tile, resolve=True),
        "tta": cfg.tta,
        **describe_postprocess(postprocess),
        "decoding": target.decoding,
        **({"tuning": tuning.describe()} if tuning is not None else {}),
        "device": str(predictor.device),
        "seconds": round(time.perf_counter() - started, 3),
        "cellseg_version": __version__,
    }
    write_json_atomic(out_dir / "eval.json", result)
    write_csv_atomic(out_dir / "per_image.csv", rows)
    run_dir = run_dir_of(model.path)
    try:
        summary = ", ".join(f"{k} {v:.4f}" for k, v in scores.items() if np.isfinite(v))
        result["tensorboard"] = str(log_to_tensorboard(run_dir, cfg.split, scores, step, summary))
    except OSError as error:  # a read-only run folder: the files above are what matters
        log.warning("TensorBoard entries not written to %s: %s", run_dir, error)
    column = (f"{cfg.split} (checkpoint epoch {epoch})", scores)
    print_score_table(f"cellseg evaluation: {out_dir}", [column], sorted(scores))
    log.info(
        "Wrote %s and per_image.csv (%d images) in %.1f s",
        out_dir / "eval.json",
        len(rows),
        result["seconds"],
    )
    return result


def check_before_start(job: DictConfig) -> None:
    """A known split, the post-processing (and its package), a cellseg checkpoint and its decoding
    settings, before Hydra creates the evaluation folder."""
    check_split(job.split)
    postprocess_request(job, tune=bool(job.tune))
    check_decoding_request(job, read_checkpoint(job.ckpt), tune=bool(job.tune))


@hydra.main(version_base="1.3", config_path=str(config_dir()), config_name="evaluate")
def _hydra_main(cfg: DictConfig) -> None:
    exit_on_bad_input(evaluate)(cfg)


def main() -> None:
    run_command("evaluate", _hydra_main, job_checks=(check_before_start,), new_folder=True)


if __name__ == "__main__":
    main()
