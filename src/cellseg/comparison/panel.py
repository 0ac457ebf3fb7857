"""The same validation images predicted by each setting's best checkpoint, with the core of
``python -m cellseg.predict`` (tiled inference, the checkpoint's own channels and normalisation)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from tqdm import tqdm

from cellseg.comparison.plots import display_plane
from cellseg.comparison.summary import Comparison
from cellseg.errors import CellsegError
from cellseg.evaluation import data_config, datamodule_for
from cellseg.inference.checkpoint import load_model
from cellseg.inference.decode import class_map
from cellseg.inference.inputs import InputPipeline
from cellseg.inference.predictor import Predictor
from cellseg.inference.tiling import TileSettings


@dataclass
class Panel:
    names: list[str]
    inputs: list[np.ndarray]
    truths: list[np.ndarray]
    predictions: dict[str, list[np.ndarray]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


def predict_panel(
    comparison: Comparison,
    images: int = 3,
    tiles: TileSettings | None = None,
    device: str = "auto",
    progress: bool = True,
) -> Panel | None:
    """Validation images of the best setting's data set and each setting's prediction of them.

    None when no setting kept a best checkpoint. A setting whose checkpoint cannot read those images
    (other channels) is left out with a note.
    """
    checkpoints = {
        row.label: next((r.best_checkpoint for r in row.setting.runs if r.best_checkpoint), None)
        for row in comparison.rows
    }
    reference_ckpt = next((c for c in checkpoints.values() if c is not None), None)
    if reference_ckpt is None:
        return None
    reference = load_model(reference_ckpt)
    datamodule = datamodule_for(data_config(None, reference), reference)
    dataset = datamodule.dataset("val")
    count = min(images, len(dataset.samples))
    sources = [dataset.samples.images[i] for i in range(count)]
    display = InputPipeline.from_pipeline(reference.pipeline, datamodule.channel_names)
    panel = Panel(
        names=[str(dataset.samples.names[i]) for i in range(count)],
        inputs=[display_plane(display(s)) for s in sources],
        truths=[dataset.classes(i) for i in range(count)],
    )
    for label, ckpt in tqdm(checkpoints.items(), desc="panel", unit="setting", disable=not progress):
        if ckpt is None:
            panel.notes.append(f"{label}: no best checkpoint kept; left out of the panel.")
            continue
        try:
            model = reference if ckpt == reference_ckpt else load_model(ckpt)
            # The panel's images are resized by the reference's data.scale; a setting trained at another
            # scale sees them resized to its own, and its outputs resized back.
            predictor = Predictor(
                model,
                tiles=tiles,
                device=device,
                channel_names=datamodule.channel_names,
                scale=model.scale / reference.scale,
            )
        except CellsegError as error:
            panel.notes.append(f"{label}: cannot predict the panel's images ({error}).")
            continue
        panel.predictions[label] = [class_map(predictor.probabilities(s)) for s in sources]
    return panel
