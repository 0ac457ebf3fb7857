"""Scoring a checkpoint on a data set's split with the tiled inference of ``python -m cellseg.predict``
and the metrics of training (:class:`~cellseg.stage_metrics.StageMetrics`): pooled and per image.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from hydra.utils import instantiate
from tqdm import tqdm

from cellseg.data.pipeline.channels import ChannelStrategy
from cellseg.data.pipeline.normalize import Normalization
from cellseg.data.pipeline.targets import target_from_description
from cellseg.data.sources.base import SegmentationDataModule
from cellseg.errors import ConfigError
from cellseg.inference.checkpoint import LoadedModel
from cellseg.inference.decode import Decoder, default_mask_values
from cellseg.inference.predictor import Predictor
from cellseg.inference.results import FileResults, OutputOptions
from cellseg.outputs import OutputLayout
from cellseg.stage_metrics import StageMetrics

#: A ``decoding.*`` value that keeps the checkpoint's setting.
KEEP_STORED = "checkpoint"

#: The splits a checkpoint can be scored on (training's own split is not a test of it).
SPLITS = ("val", "test")


def check_split(split: str) -> None:
    if split not in SPLITS:
        raise ConfigError(f"split is '{split}'; expected one of {', '.join(SPLITS)}.")


def data_config(given: Mapping[str, Any] | None, model: LoadedModel) -> dict[str, Any]:
    """The data set to score on: ``given`` (a data config from the command line), else the one the
    checkpoint records."""
    if given is not None:
        return dict(given)
    stored = model.pipeline.get("data")
    if not stored:
        raise ConfigError(
            f"{model.path}: does not record its data set; say which to use, e.g. data=isbi data.root=<folder>."
        )
    return dict(stored)


def datamodule_for(data: Mapping[str, Any], model: LoadedModel) -> SegmentationDataModule:
    """The data module of ``data`` fed with the checkpoint's channels, target, normalisation and scale (its
    images and truth resized as the training images were: scores are those of training's validation)."""
    pipeline = model.pipeline
    make = instantiate(dict(data), _partial_=True, _convert_="partial")
    return make(
        channels=ChannelStrategy(specs=list(pipeline["channels"])),
        target=target_from_description(dict(pipeline["target"])),
        normalization=Normalization(**dict(pipeline["normalization"])),
        augmentation=None,
        scale=model.scale,
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
    on_image: Callable[[str, np.ndarray], None] | None = None,
    decode: Decoder | None = None,
    outputs: Sequence[np.ndarray] | None = None,
) -> tuple[dict[str, float], list[dict[str, Any]]]:
    """Pooled scores of the split (as training computes them) and one row of scores per image.

    ``decode`` makes instances of targets with regression outputs (default: the checkpoint's target);
    ``outputs`` are the split's predicted outputs when already computed (:func:`predict_split`)."""
    dataset = datamodule.dataset(split)
    class_names = list(predictor.class_names)
    ignore_index = int(predictor.model.pipeline["target"].get("ignore_index", -100))
    extra = tuple(datamodule.eval_metrics)
    layout = predictor.layout
    # Classes only: instances come from the class map, as in training.
    decode = (decode or predictor.model.target.decode) if layout.has_regression else None
    pooled = StageMetrics(class_names, ignore_index, extra, decode=decode)
    rows = []
    for index in tqdm(
        range(len(dataset.samples)), desc=f"{split} images", unit="image", disable=not progress
    ):
        started = time.perf_counter()
        image_outputs = (
            outputs[index] if outputs is not None else predictor.outputs(dataset.samples.images[index])
        )
        probabilities, regression = layout.split_array(image_outputs)
        batch = _batch(dataset.classes(index), dataset.instances[index])
        tensor = torch.from_numpy(probabilities)[None]
        single = StageMetrics(class_names, ignore_index, extra, decode=decode)
        maps = torch.from_numpy(regression)[None] if regression is not None else None
        single.update_from_probabilities(tensor, batch, maps)
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
            on_image(dataset.samples.names[index], image_outputs)
    return pooled.compute(), rows


def predict_split(
    predictor: Predictor, datamodule: SegmentationDataModule, split: str, progress: bool = True
) -> list[np.ndarray]:
    """The outputs (K + R, H, W) of every image of a split, kept to be decoded many times (tuning)."""
    dataset = datamodule.dataset(split)
    return [
        predictor.outputs(image)
        for image in tqdm(dataset.samples.images, desc=f"{split} images", unit="image", disable=not progress)
    ]


def decoding_overrides(cfg: Any) -> dict[str, Any]:
    """The ``decoding.<name>=<value>`` settings given to predict or evaluate, over the checkpoint's: the
    ones not left at ``checkpoint``, limited to those the checkpoint's target has."""
    from omegaconf import OmegaConf

    given = cfg.get("decoding")
    settings = dict(OmegaConf.to_container(given, resolve=True)) if given else {}
    return {name: value for name, value in settings.items() if value != KEEP_STORED}


def check_decoding_request(job: Any, checkpoint: Mapping[str, Any], tune: bool = False) -> None:
    """``decoding.*`` overrides the checkpoint's target has, within range, and ``tune=true`` only for a
    target with thresholds to tune: checked from the checkpoint file alone, before any work."""
    hparams = checkpoint.get("hyper_parameters") or {}
    description = (hparams.get("pipeline") or {}).get("target")
    if not description:
        return
    stored = {**(hparams.get("decoding") or {}), **decoding_overrides(job)}
    target = target_from_description(description, stored)
    if tune and not target.tuning_grid():
        raise ConfigError(
            f"tune=true: {type(target).__name__} has no decoding thresholds to tune (its instances come "
            "from the class map); tuning applies to target=distance and target=flows."
        )


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


def prediction_writer(
    folder: Path, class_names: Sequence[str], layout: OutputLayout, decode: Decoder
) -> Callable[[str, np.ndarray], None]:
    """An ``on_image`` for :func:`score_split` that saves each image's mask, foreground probability and
    instance labels."""
    options = OutputOptions(
        ("mask", "probability", "instances"),
        "png",
        tuple(default_mask_values(len(class_names))),
        "foreground",
    )

    def write(name: str, outputs: np.ndarray) -> None:
        # Sample names such as "train-volume.tif[25]" become file names such as "train-volume_tif_25".
        stem = re.sub(r"[^\w-]+", "_", name).strip("_")
        with FileResults(folder, stem, options, class_names, 1, *outputs.shape[-2:]) as results:
            results.add_outputs(0, outputs, layout, decode)

    return write
