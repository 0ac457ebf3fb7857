"""Prediction for images of any size: checkpoint loading, input pipeline, overlap-tile core, TTA, decoding.

- :mod:`~cellseg.inference.checkpoint`: a network and its data pipeline from a checkpoint file alone
  (:mod:`~cellseg.inference.legacy` maps config paths that older checkpoints store);
- :mod:`~cellseg.inference.inputs`: files to model input with the checkpoint's channels and normalisation;
- :mod:`~cellseg.inference.tiling`: the functional overlap-tile core (mirror padding, blending, batches);
- :mod:`~cellseg.inference.tta`: flip and rotation test-time augmentation;
- :mod:`~cellseg.inference.predictor`: the stateful wrapper used by predict, evaluate and the benchmark;
- :mod:`~cellseg.inference.decode` and :mod:`~cellseg.inference.writers`: masks, instances and files;
- :mod:`~cellseg.inference.results`: what is kept of each image and written per input file.
"""

from cellseg.inference.blending import predict_tiled
from cellseg.inference.checkpoint import CheckpointError, LoadedModel, load_model, read_checkpoint
from cellseg.inference.predictor import Predictor
from cellseg.inference.tiling import TileSettings

__all__ = [
    "CheckpointError",
    "LoadedModel",
    "Predictor",
    "TileSettings",
    "load_model",
    "predict_tiled",
    "read_checkpoint",
]
