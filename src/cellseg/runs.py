"""The run-directory contract: where runs may be written, what a run checks before it starts, and
which run a checkpoint belongs to. Every command's "can I write there" check is :func:`check_writable`."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from cellseg.errors import CheckpointNotFoundError, OutputDirError, RunExistsError
from cellseg.utils.processes import liveness

#: What each refusal suggests, by what was to be written.
OUTPUT_ROOT_HINT = "Choose a writable location with paths.output_root=<dir> (or the CELLSEG_OUTPUT_ROOT environment variable)."


def check_writable(path: str | Path, what: str, hint: str = OUTPUT_ROOT_HINT) -> Path:
    """``path`` as an absolute path, or an OutputDirError before any work if it could not be created or
    written: the nearest of it and its parents that exists must be a writable folder. Nothing is created.

    ``what`` completes "Cannot write ...", e.g. ``"runs to"`` or ``"to the output directory"``.
    """
    path = Path(path).expanduser().absolute()
    existing = next(p for p in (path, *path.parents) if p.exists())
    if not existing.is_dir() or not os.access(existing, os.W_OK | os.X_OK):
        reason = "is not a directory" if not existing.is_dir() else "is not writable"
        raise OutputDirError(f"Cannot write {what} '{path}': '{existing}' {reason}. {hint}")
    return path


def prepare_run_dir(run_dir: str | Path) -> Path:
    """Create the run directory; refuse an unwritable one or one that already holds another run's results."""
    run_dir = Path(run_dir)
    check_writable(
        run_dir,
        "to the output directory",
        "Choose a writable location with paths.output_root=<dir> (or hydra.run.dir=<dir>).",
    )
    run_dir.mkdir(parents=True, exist_ok=True)
    existing = [
        p for p in (run_dir / "metrics.json", *sorted((run_dir / "checkpoints").glob("*.ckpt"))) if p.exists()
    ]
    if existing:
        raise RunExistsError(
            f"The run directory '{run_dir}' already holds results of another run "
            f"({', '.join(p.name for p in existing)}); refusing to overwrite them. "
            "Start a new run (the default directory is time-stamped) or pass another hydra.run.dir."
        )
    return run_dir


def run_dir_of(ckpt: str | Path) -> Path:
    """The training run a checkpoint belongs to (the parent of its ``checkpoints/`` folder)."""
    path = Path(ckpt).expanduser()
    return path.parent.parent if path.parent.name == "checkpoints" else path.parent


def check_checkpoint(ckpt_path: str | None) -> str | None:
    """A resume checkpoint must exist and be a file, before any data is generated."""
    if ckpt_path is None:
        return None
    path = Path(ckpt_path).expanduser()
    if not path.is_file():
        raise CheckpointNotFoundError(
            f"ckpt_path '{ckpt_path}' does not exist. To resume, pass a checkpoint of an earlier run, "
            "e.g. ckpt_path=outputs/train/<date>_<time>/checkpoints/last.ckpt."
        )
    return str(path.resolve())


def run_status(summary: Mapping[str, Any]) -> str:
    """A run's status as metrics.json states it, except ``killed`` for a 'running' run whose writer is gone.

    A SIGKILLed or pre-empted process cannot mark its own run; the host and pid it recorded tell.
    """
    status = str(summary.get("status", "unknown"))
    if status == "running" and liveness(summary.get("process")) == "gone":
        return "killed"
    return status
