"""Decoding thresholds tuned on validation images (StarDist's ``optimize_thresholds``).

The network's outputs are computed once per image; every combination of the target's
:meth:`~cellseg.data.pipeline.targets.Target.tuning_grid` then decodes them, and the combination with the
highest AP50 over the whole split wins (ties: the settings in use before, then the first in grid order). The
result is stored in the checkpoint (``decoding``), where predict and evaluate find it.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from cellseg.data.pipeline.targets import Target
from cellseg.errors import ConfigError
from cellseg.metrics.instances import instance_scores
from cellseg.outputs import OutputLayout
from cellseg.utils.io import atomic_path

#: The score decoding is tuned for.
TUNED_SCORE = "ap50"


@dataclass
class TuningResult:
    """The chosen decoding settings, their score and that of every combination tried."""

    settings: dict[str, Any]
    score: float
    previous_score: float
    trials: list[dict[str, Any]] = field(default_factory=list)

    def describe(self) -> dict[str, Any]:
        return {
            "decoding": self.settings,
            f"tuned_{TUNED_SCORE}": self.score,
            f"previous_{TUNED_SCORE}": self.previous_score,
            "combinations": len(self.trials),
        }


def tune_decoding(
    target: Target,
    layout: OutputLayout,
    outputs: Sequence[np.ndarray],
    truths: Sequence[np.ndarray],
    progress: bool = True,
) -> TuningResult:
    """The decoding settings of ``target``'s grid that maximise AP50 of ``outputs`` (K + R, H, W) against
    the true instance maps ``truths`` (H, W), 0 = background, negative = unannotated (counted as
    background). ``previous_score`` is the AP50 of the settings the target had (configured or stored)."""
    grid = target.tuning_grid()
    if not grid:
        raise ConfigError(
            f"{type(target).__name__} has no decoding thresholds to tune: its instances come from the class "
            "map. Tuning applies to target=distance and target=flows."
        )
    if not outputs:
        raise ConfigError("No validation images to tune the decoding on.")
    split = [layout.split_array(o) for o in outputs]
    truths = [np.maximum(np.asarray(t), 0) for t in truths]
    defaults = target.decoding
    names = list(grid)
    combinations = [dict(zip(names, values, strict=True)) for values in itertools.product(*grid.values())]
    previous_choice = {name: defaults[name] for name in names}
    if previous_choice not in combinations:
        combinations.insert(0, previous_choice)
    per_image = [
        target.decode_each(p, r, combinations)
        for p, r in tqdm(split, desc="tuning decoding", unit="image", disable=not progress)
    ]
    trials = [
        {**choice, TUNED_SCORE: instance_scores(truths, [decoded[i] for decoded in per_image])[TUNED_SCORE]}
        for i, choice in enumerate(combinations)
    ]
    previous_score = next(t[TUNED_SCORE] for t in trials if all(t[n] == previous_choice[n] for n in names))
    best = max(trials, key=lambda t: (t[TUNED_SCORE], all(t[n] == previous_choice[n] for n in names)))
    settings = {**defaults, **{name: best[name] for name in names}}
    return TuningResult(settings, float(best[TUNED_SCORE]), float(previous_score), trials)


def store_decoding(checkpoint: str | Path, settings: Mapping[str, Any]) -> None:
    """Write the tuned settings into the checkpoint's hyperparameters (``decoding``), atomically: the
    file is replaced whole, so a failure leaves the old checkpoint intact."""
    path = Path(checkpoint)
    contents = torch.load(path, map_location="cpu", weights_only=True)
    contents.setdefault("hyper_parameters", {})["decoding"] = dict(settings)
    with atomic_path(path) as tmp:
        torch.save(contents, tmp)
