"""File writing that never leaves a half-written file behind: JSON, CSV and anything a callback writes."""

from __future__ import annotations

import csv
import io
import json
import math
import os
import tempfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, BinaryIO


def _json_safe(value: Any) -> Any:
    """NaN and infinities become null: strict JSON readers (and jq) reject them."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    return value


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """A temporary path in ``path``'s folder to write to; renamed over ``path`` when the block succeeds.

    A rename within one file system is atomic: readers see the old file or the new one, never a
    half-written one, even if the process is killed mid-write. On error the temporary file is removed.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        with open(tmp, "rb+") as handle:
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o666 & ~_current_umask())  # mkstemp makes files private; runs are shared
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_atomic(path: str | os.PathLike[str], write: Callable[[BinaryIO], None]) -> None:
    """Let ``write`` fill a temporary file in the same folder, sync it, then rename it over ``path``."""
    with atomic_path(path) as tmp, open(tmp, "wb") as handle:
        write(handle)


def write_json_atomic(path: str | os.PathLike[str], data: Any) -> None:
    """Write ``data`` as indented JSON to ``path`` atomically."""
    text = json.dumps(_json_safe(data), indent=2) + "\n"
    write_atomic(path, lambda handle: handle.write(text.encode()))


def write_csv_atomic(path: str | os.PathLike[str], rows: Sequence[Mapping[str, Any]]) -> None:
    """Rows as CSV (columns in first-seen order; NaN and infinities written as empty cells)."""
    columns = list(dict.fromkeys(key for row in rows for key in row))
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns)
    writer.writeheader()
    for row in rows:
        writer.writerow(
            {k: "" if isinstance(v, float) and not math.isfinite(v) else v for k, v in row.items()}
        )
    write_atomic(path, lambda handle: handle.write(buffer.getvalue().encode()))
