"""What every exporter shares: the error type, the metadata key, logging quiet-downs, shapes and runners."""

from __future__ import annotations

import importlib.util
import json
import logging
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import numpy as np
import torch

from cellseg.errors import CellsegError, ConfigError

#: Name of the metadata JSON inside the file (a TorchScript extra file, an ONNX metadata_props key).
METADATA_KEY = "cellseg.json"

Shape = tuple[int, int, int, int]

Runner = Callable[[torch.Tensor], np.ndarray]


def check_installed(fmt: str, packages: Sequence[str], extra: str, alternative: str = "") -> None:
    """ConfigError naming the packages ``format=fmt`` needs that are missing, and the extra that has them."""
    missing = [name for name in packages if importlib.util.find_spec(name) is None]
    if missing:
        raise ConfigError(
            f"format={fmt} needs {', '.join(missing)}, which is not installed; install it with "
            f'pip install "cellseg[{extra}]"{alternative}.'
        )


class ExportError(CellsegError, RuntimeError):
    """The exporter could not convert the network, or the exported file computes other logits."""


def metadata_json(metadata: dict[str, Any]) -> str:
    return json.dumps(metadata, default=str)


@contextmanager
def quiet(*loggers: str) -> Iterator[None]:
    """Keep the exporter's chatter off the console (optimizer passes, shape solver tracebacks).

    What matters reaches the user anyway: an export error, or the parity check's verdict.
    """
    levels = {name: logging.getLogger(name).level for name in loggers}
    for name in loggers:
        logging.getLogger(name).setLevel(logging.ERROR)
    try:
        yield
    finally:
        for name, level in levels.items():
            logging.getLogger(name).setLevel(level)


def first_line(error: BaseException) -> str:
    text = str(error).strip()
    return f"{type(error).__name__}: {text.splitlines()[0] if text else ''}"
