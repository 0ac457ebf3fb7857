"""Files a run writes are replaced whole or not at all."""

from __future__ import annotations

import json
import os

import pytest
import torch

from cellseg.utils.checkpoint_io import AtomicCheckpointIO
from cellseg.utils.io import write_atomic, write_json_atomic


class _Unpicklable:
    def __reduce__(self):
        raise RuntimeError("disk full")  # a failure in the middle of torch.save


def test_failed_checkpoint_write_keeps_the_previous_checkpoint(tmp_path):
    path = tmp_path / "last.ckpt"
    io = AtomicCheckpointIO()
    io.save_checkpoint({"epoch": 1, "weights": torch.ones(1000)}, path)
    with pytest.raises(RuntimeError, match="disk full"):
        io.save_checkpoint({"epoch": 2, "weights": torch.ones(1000), "bad": _Unpicklable()}, path)
    assert torch.load(path, weights_only=True)["epoch"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["last.ckpt"]  # no temporary file left behind


def test_atomic_files_get_ordinary_permissions(tmp_path):
    write_atomic(tmp_path / "a.bin", lambda handle: handle.write(b"x"))
    mask = os.umask(0)
    os.umask(mask)
    assert (tmp_path / "a.bin").stat().st_mode & 0o777 == 0o666 & ~mask


def test_json_is_strict_nan_becomes_null(tmp_path):
    write_json_atomic(tmp_path / "m.json", {"dice": float("nan"), "nested": [float("inf"), 1.0]})
    assert json.loads((tmp_path / "m.json").read_text()) == {"dice": None, "nested": [None, 1.0]}
