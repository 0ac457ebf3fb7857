"""Config paths written into checkpoints by older cellseg versions, mapped to where the code lives now.

A checkpoint stores resolved configs (its loss, its data set), ``_target_`` paths included. When code
moves, :func:`current_targets` rewrites the stored paths on load, so an old checkpoint predicts and
evaluates exactly as before (``tests/test_old_checkpoint.py``).
"""

from __future__ import annotations

from typing import Any

#: ``_target_`` of cellseg 0.1.0 -> today's full module path.
MOVED_TARGETS: dict[str, str] = {
    "cellseg.data.ChannelStrategy": "cellseg.data.pipeline.channels.ChannelStrategy",
    "cellseg.data.SyntheticDataModule": "cellseg.data.sources.synthetic.SyntheticDataModule",
    "cellseg.data.folder.FolderDataModule": "cellseg.data.sources.folder.FolderDataModule",
    "cellseg.data.folder.LggDataModule": "cellseg.data.sources.lgg.LggDataModule",
    "cellseg.data.folder.HyperlabeledDataModule": "cellseg.data.sources.hyperlabeled.HyperlabeledDataModule",
    "cellseg.data.isbi.IsbiDataModule": "cellseg.data.sources.isbi.IsbiDataModule",
    "cellseg.data.targets.BinaryTarget": "cellseg.data.pipeline.targets.BinaryTarget",
    "cellseg.data.targets.BoundaryTarget": "cellseg.data.pipeline.targets.BoundaryTarget",
    "cellseg.data.targets.FromChannelTarget": "cellseg.data.pipeline.targets.FromChannelTarget",
    "cellseg.data.augment.elastic": "cellseg.data.pipeline.augment.elastic",
    "cellseg.data.augment.fastai": "cellseg.data.pipeline.augment.fastai",
    "cellseg.losses.BinaryCrossEntropyLoss": "cellseg.losses.binary.BinaryCrossEntropyLoss",
    "cellseg.losses.CompositeLoss": "cellseg.losses.composite.CompositeLoss",
    "cellseg.losses.CrossEntropyLoss": "cellseg.losses.cross_entropy.CrossEntropyLoss",
    "cellseg.losses.FocalLoss": "cellseg.losses.cross_entropy.FocalLoss",
    "cellseg.losses.UNetWeightedCrossEntropyLoss": "cellseg.losses.cross_entropy.UNetWeightedCrossEntropyLoss",
    "cellseg.losses.DiceLoss": "cellseg.losses.overlap.DiceLoss",
    "cellseg.losses.TverskyLoss": "cellseg.losses.overlap.TverskyLoss",
    "cellseg.losses.LovaszSoftmaxLoss": "cellseg.losses.lovasz.LovaszSoftmaxLoss",
}


def current_targets(node: Any) -> Any:
    """A copy of a stored config (dicts and lists of plain values) with moved ``_target_`` paths updated."""
    if isinstance(node, dict):
        return {
            key: MOVED_TARGETS.get(value, value) if key == "_target_" else current_targets(value)
            for key, value in node.items()
        }
    if isinstance(node, list):
        return [current_targets(value) for value in node]
    return node
