"""Instance scores of brightfield-nuclei checkpoints on the validation field, two ways that a single
best-epoch score cannot give (experiments/instance_targets.md, part 3):

- ``shifted``: at the training scale, the mean (and SD) of AP50/AP75/PQ over 8 crops of the validation
  field shifted by 0-24 px. The network sees another pooling phase in each, so the spread shows how much
  of a one-field score is the phase rather than the checkpoint; the training run's own best-epoch score
  is also chosen on this field, so it is biased upwards and this mean is not.
- ``full``: the field at its own resolution, predicted as ``python -m cellseg.predict`` does (resized by
  the checkpoint's data.scale and the outputs back, decoded at the training scale with the checkpoint's
  settings and the labels resized back), and matched
  against the nuclei thresholded from DAPI at full resolution (target=from_channel's defaults), the truth
  of the runs without data.scale.

Usage: python experiments/scripts/zstack_instance_scores.py <checkpoint> [<checkpoint> ...]
Prints one JSON line per checkpoint.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np
import tifffile
import torch

from cellseg.data.pipeline.dataset import SegmentationDataset
from cellseg.data.pipeline.targets import FromChannelTarget
from cellseg.evaluation import data_config, datamodule_for
from cellseg.inference.checkpoint import LoadedModel, load_model
from cellseg.inference.decode import decoded_at_scale
from cellseg.inference.predictor import Predictor
from cellseg.metrics.instances import instance_scores

SHIFTS = ((0, 0), (8, 0), (16, 0), (24, 0), (0, 8), (0, 16), (8, 8), (16, 16))
SCORES = ("ap50", "ap75", "pq")


def validation_field(model: LoadedModel) -> SegmentationDataset:
    """The checkpoint's validation split (one field), resized by its data.scale."""
    dataset = datamodule_for(data_config(None, model), model).dataset("val")
    if len(dataset.samples) != 1:
        raise ValueError(f"{model.path}: expected one validation field, got {len(dataset.samples)}.")
    return dataset


def shifted_scores(dataset: SegmentationDataset, model: LoadedModel) -> dict[str, float]:
    """Mean and SD of the scores over the shifted crops of the validation field at the training scale."""
    image, truth = dataset[0]["image"], dataset.instances[0]
    layout, target = model.layout, model.target
    rows = []
    for dy, dx in SHIFTS:
        with torch.inference_mode():
            outputs = layout.activate(model.net(image[None, :, dy:, dx:]))[0].numpy()
        found = target.decode(*layout.split_array(outputs))
        rows.append(instance_scores([truth[dy:, dx:]], [found]))
    result = {}
    for name in SCORES:
        values = [row[name] for row in rows]
        result[f"shifted_{name}"] = round(float(np.mean(values)), 3)
        result[f"shifted_{name}_sd"] = round(float(np.std(values)), 3)
    return result


def full_resolution_scores(model: LoadedModel, field: Path) -> dict[str, float]:
    """Scores of the field predicted at its own resolution against the full-resolution DAPI nuclei."""
    image = tifffile.imread(field).astype(np.float32)
    names = list(model.channel_names)
    truth = FromChannelTarget(channel="dapi").instances_from_image(image, names)
    predictor = Predictor(model, device="cpu")  # the checkpoint's scale, as predict uses it
    started = time.perf_counter()
    probabilities, regression = predictor.layout.split_array(predictor.outputs(image))
    found = decoded_at_scale(model.target.decode, predictor.scale)(probabilities, regression)
    scores = instance_scores([truth], [found])
    return {
        **{f"full_{name}": round(scores[name], 3) for name in SCORES},
        "full_cells_true": int(truth.max()),
        "full_cells_found": len(np.unique(found)) - 1,
        "full_seconds": round(time.perf_counter() - started, 1),
    }


def main(checkpoints: list[str]) -> None:
    torch.set_num_threads(1)
    for ckpt in checkpoints:
        model = load_model(ckpt)
        dataset = validation_field(model)
        field = Path(model.pipeline["data"]["root"]) / dataset.samples.names[0]
        row = {"ckpt": ckpt, "scale": model.scale, **shifted_scores(dataset, model)}
        row.update(full_resolution_scores(model, field))
        print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
