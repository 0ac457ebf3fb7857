"""Callbacks of cellseg's training runs."""

from cellseg.callbacks.finetune import EncoderFinetuning
from cellseg.callbacks.image_grid import ValidationImageGrid
from cellseg.callbacks.run_summary import RunSummary

__all__ = ["EncoderFinetuning", "RunSummary", "ValidationImageGrid"]
