"""``python -m cellseg.evaluate``: every metric that fits a data set, on its val or test split, with the
same tiled inference as ``python -m cellseg.predict``.

    python -m cellseg.evaluate ckpt=outputs/train/<run>/checkpoints/best.ckpt split=val
    python -m cellseg.evaluate ckpt=... data=isbi data.root=../shared/data/isbi2012

Without ``data=...`` the data set the checkpoint was trained on is used (its config is stored in the
checkpoint; relative paths are relative to where you start the command). Channels, normalisation and
target always come from the checkpoint. Results go next to the run, in
``<run>/eval/<checkpoint>/<split>_<date>_<time>/``: ``eval.json`` (scores pooled over the split, as in
training), ``per_image.csv`` (one row per image) and TensorBoard scalars in ``<run>/tensorboard/eval``.
"""

from __future__ import annotations

import csv
import io
import logging
import re
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import hydra
import numpy as np
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from rich.console import Console
from rich.table import Table
from tqdm import tqdm

from cellseg import __version__
from cellseg.cli import exit_on_bad_input, run_command
from cellseg.config import config_dir
from cellseg.data.channels import ChannelStrategy
from cellseg.data.datamodule import SegmentationDataModule
from cellseg.data.normalize import Normalization
from cellseg.data.targets import target_from_description
from cellseg.errors import ConfigError, DataError
from cellseg.inference.checkpoint import LoadedModel, read_checkpoint
from cellseg.inference.decode import default_mask_values
from cellseg.inference.inputs import InputPipeline
from cellseg.inference.predictor import Predictor
from cellseg.inference.tiling import TileSettings
from cellseg.stage_metrics import StageMetrics
from cellseg.utils.io import write_atomic, write_json_atomic
from cellseg.utils.runs import run_dir_of

log = logging.getLogger(__name__)

SPLITS = ("val", "test")


def data_config(cfg: DictConfig, model: LoadedModel, overrides: Sequence[str]) -> dict[str, Any]:
    """The data set to score on: the command line's ``data`` when given, else the checkpoint's own."""
    if any(o.lstrip("+~").startswith(("data=", "data.")) for o in overrides):
        return OmegaConf.to_container(cfg.data, resolve=True)
    stored = model.pipeline.get("data")
    if not stored:
        raise ConfigError(
            f"{model.path}: does not record its data set; say which to use, e.g. data=isbi data.root=<folder>."
        )
    return dict(stored)


def datamodule_for(data: Mapping[str, Any], model: LoadedModel) -> SegmentationDataModule:
    """The data module of ``data`` fed with the checkpoint's channels, target and normalisation."""
    pipeline = model.pipeline
    make = instantiate(dict(data), _partial_=True, _convert_="partial")
    return make(
        channels=ChannelStrategy(specs=list(pipeline["channels"])),
        target=target_from_description(dict(pipeline["target"])),
        normalization=Normalization(**dict(pipeline["normalization"])),
        augmentation=None,
    )


def _batch(mask: np.ndarray, instances: np.ndarray) -> dict[str, torch.Tensor]:
    return {
        "mask": torch.from_numpy(mask.astype(np.int64))[None],
        "instances": torch.from_numpy(instances.astype(np.int64))[None],
    }


def score_split(
    predictor: Predictor,
    datamodule: SegmentationDataModule,
    split: str,
    progress: bool = True,
    on_image: Any = None,
) -> tuple[dict[str, float], list[dict[str, Any]]]:
    """Pooled scores of the split (as training computes them) and one row of scores per image."""
    dataset = datamodule.dataset(split)
    class_names = list(predictor.class_names)
    ignore_index = int(predictor.model.pipeline["target"].get("ignore_index", -100))
    extra = tuple(datamodule.eval_metrics)
    pooled = StageMetrics(class_names, ignore_index, extra)
    rows = []
    for index in tqdm(
        range(len(dataset.samples)), desc=f"{split} images", unit="image", disable=not progress
    ):
        started = time.perf_counter()
        probabilities = predictor.probabilities(dataset.samples.images[index])
        batch = _batch(dataset.classes(index), dataset.instances[index])
        tensor = torch.from_numpy(probabilities)[None]
        single = StageMetrics(class_names, ignore_index, extra)
        single.update_from_probabilities(tensor, batch)
        pooled.merge(single)  # the image's counts join the split's: each metric is computed once
        height, width = probabilities.shape[-2:]
        rows.append(
            {
                "image": dataset.samples.names[index],
                "height": height,
                "width": width,
                **single.compute(),
                "seconds": round(time.perf_counter() - started, 3),
            }
        )
        if on_image is not None:
            on_image(dataset.samples.names[index], probabilities)
    return pooled.compute(), rows


def write_csv(path: Path, rows: Sequence[Mapping[str, Any]]) -> None:
    """Rows as CSV (columns in first-seen order; NaN written as empty)."""
    columns = list(dict.fromkeys(key for row in rows for key in row))
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns)
    writer.writeheader()
    for row in rows:
        writer.writerow(
            {k: ("" if isinstance(v, float) and not np.isfinite(v) else v) for k, v in row.items()}
        )
    write_atomic(path, lambda handle: handle.write(buffer.getvalue().encode()))


def log_to_tensorboard(run_dir: Path, split: str, scores: Mapping[str, float], step: int, text: str) -> Path:
    """Scalars ``eval/<split>/<metric>`` at the checkpoint's step, in ``<run>/tensorboard/eval``."""
    from torch.utils.tensorboard import SummaryWriter

    folder = run_dir / "tensorboard" / "eval"
    with SummaryWriter(str(folder)) as writer:
        for name, value in scores.items():
            if np.isfinite(value):
                writer.add_scalar(f"eval/{split}/{name}", value, global_step=step)
        writer.add_text(f"eval/{split}", text, global_step=step)
    return folder


def print_scores(scores: Mapping[str, float], column: str, title: str) -> None:
    """One row per metric, as the training summary prints them."""
    table = Table(title=f"cellseg evaluation: {title}", title_justify="left")
    table.add_column("metric")
    table.add_column(column, justify="right")
    for name in sorted(scores):
        table.add_row(name, "-" if not np.isfinite(scores[name]) else f"{scores[name]:.4f}")
    Console().print(table)


def evaluate(cfg: DictConfig) -> dict[str, Any]:
    """Score the checkpoint on ``split`` and write eval.json, per_image.csv and TensorBoard scalars."""
    from cellseg.predict import ImageResult, OutputOptions, write_results

    started = time.perf_counter()
    check_split(cfg.split)
    tiles = TileSettings(**OmegaConf.to_container(cfg.tile, resolve=True))
    predictor = Predictor.from_checkpoint(cfg.ckpt, tiles=tiles, tta=cfg.tta, device=cfg.device, amp=cfg.amp)
    model = predictor.model
    overrides = list(HydraConfig.get().overrides.task) if HydraConfig.initialized() else []
    data = data_config(cfg, model, overrides)
    datamodule = datamodule_for(data, model)
    if not datamodule.has_split(cfg.split):
        raise DataError(f"{type(datamodule).__name__} has no '{cfg.split}' split to evaluate on.")
    predictor.inputs = InputPipeline(model.pipeline, datamodule.channel_names)
    out_dir = Path(cfg.paths.run_dir)
    out_dir.mkdir(parents=True, exist_ok=True)

    on_image = None
    if cfg.save_predictions:
        names = model.class_names
        options = OutputOptions(
            ("mask", "probability"), "png", tuple(default_mask_values(len(names))), "foreground"
        )

        def on_image(name: str, probabilities: np.ndarray) -> None:
            result = ImageResult.of(probabilities, options)
            # Sample names such as "train-volume.tif[25]" become file names such as "train-volume_tif_25".
            stem = re.sub(r"[^\w-]+", "_", name).strip("_")
            write_results(out_dir / "predictions", stem, [result], names, options)

    log.info("Evaluating %s on the %s split of %s", model.path, cfg.split, type(datamodule).__name__)
    scores, rows = score_split(predictor, datamodule, cfg.split, cfg.progress, on_image)
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
        "device": str(predictor.device),
        "seconds": round(time.perf_counter() - started, 3),
        "cellseg_version": __version__,
    }
    write_json_atomic(out_dir / "eval.json", result)
    write_csv(out_dir / "per_image.csv", rows)
    run_dir = run_dir_of(model.path)
    try:
        summary = ", ".join(f"{k} {v:.4f}" for k, v in scores.items() if np.isfinite(v))
        result["tensorboard"] = str(log_to_tensorboard(run_dir, cfg.split, scores, step, summary))
    except OSError as error:  # a read-only run folder: the files above are what matters
        log.warning("TensorBoard entries not written to %s: %s", run_dir, error)
    print_scores(scores, f"{cfg.split} (checkpoint epoch {epoch})", str(out_dir))
    log.info(
        "Wrote %s and per_image.csv (%d images) in %.1f s",
        out_dir / "eval.json",
        len(rows),
        result["seconds"],
    )
    return result


def check_split(split: str) -> None:
    if split not in SPLITS:
        raise ConfigError(f"split is '{split}'; expected one of {', '.join(SPLITS)}.")


def check_before_start(job: DictConfig) -> None:
    """A cellseg checkpoint and a known split, before Hydra creates the evaluation folder."""
    check_split(job.split)
    read_checkpoint(job.ckpt)


@hydra.main(version_base="1.3", config_path=str(config_dir()), config_name="evaluate")
def _hydra_main(cfg: DictConfig) -> None:
    exit_on_bad_input(evaluate)(cfg)


def main() -> None:
    run_command("evaluate", _hydra_main, job_checks=(check_before_start,))


if __name__ == "__main__":
    main()
