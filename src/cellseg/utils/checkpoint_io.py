"""Checkpoint writing that survives a crash or kill mid-save."""

from __future__ import annotations

from typing import Any

import torch
from lightning_fabric.utilities.types import _PATH
from pytorch_lightning.plugins.io import TorchCheckpointIO

from cellseg.utils.io import write_atomic


class AtomicCheckpointIO(TorchCheckpointIO):
    """Saves each checkpoint to a temporary file beside it, then renames it into place.

    Lightning's own writer stages the file in the system temp folder and moves it, which is a copy,
    not an atomic rename, when that folder is on another file system than the run directory.
    """

    def save_checkpoint(
        self, checkpoint: dict[str, Any], path: _PATH, storage_options: Any | None = None
    ) -> None:
        if storage_options is not None:
            raise TypeError(f"{type(self).__name__} takes no storage_options, got {storage_options!r}.")
        write_atomic(path, lambda handle: torch.save(checkpoint, handle))
