"""The run-directory contract: where runs may be written, what a run checks before it starts, and
which run a checkpoint belongs to. Every command's "can I write there" check is :func:`check_writable`."""

from __future__ import annotations

import os
import shutil
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


#: What a training run writes into its folder; a folder holding any of them belongs to a run.
RUN_ENTRIES = ("metrics.json", "checkpoints", ".hydra", "train.log")


def run_entries(folder: str | Path) -> list[str]:
    """The entries of ``folder`` that a training run wrote (empty when it holds no run)."""
    folder = Path(folder)
    return [name for name in RUN_ENTRIES if (folder / name).exists()]


def is_training_run(folder: str | Path) -> bool:
    """True for a folder with a training run's results (its metrics.json or checkpoints)."""
    return any((Path(folder) / name).exists() for name in ("metrics.json", "checkpoints"))


def sweep_entries(folder: str | Path) -> list[str]:
    """What a multirun left in ``folder``: its multirun.yaml and the job folders that hold a run."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    jobs = sorted(p.name for p in folder.iterdir() if p.is_dir() and run_entries(p))
    return (["multirun.yaml"] if (folder / "multirun.yaml").exists() else []) + jobs


def claim_new_folder(path: str | Path) -> Path:
    """Create ``path`` as a new, empty folder of this process, atomically; ``<path>_2``, ``_3``, ... when
    another process took it first (two runs started in the same second never share a folder)."""
    path = Path(path).absolute()
    path.parent.mkdir(parents=True, exist_ok=True)
    candidate, number = path, 1
    while True:
        try:
            candidate.mkdir()
            return candidate
        except FileExistsError:
            number += 1
            candidate = path.with_name(f"{path.name}_{number}")


def claim_given_folder(path: str | Path, key: str, held: list[str]) -> Path:
    """Use the folder the user named with ``key``, refusing one that already holds ``held`` results."""
    path = Path(path).absolute()
    if held:
        shown = ", ".join(held[:5]) + (", ..." if len(held) > 5 else "")
        raise RunExistsError(
            f"{key}='{path}' already holds results of another run ({shown}); refusing to touch them. "
            f"Choose a new folder for {key}, or leave it out to get a new time-stamped one."
        )
    path.mkdir(parents=True, exist_ok=True)
    return path


def remove_unstarted_run(folder: str | Path) -> bool:
    """Remove a folder cellseg claimed for a run that was refused before it started, when it holds
    nothing but what Hydra wrote; returns whether it did. A folder with anything else is kept."""
    folder = Path(folder)
    if not folder.is_dir() or any(
        p.name != ".hydra" and not (p.suffix == ".log" and p.is_file()) for p in folder.iterdir()
    ):
        return False
    shutil.rmtree(folder)
    return True


def check_new_run_dir(run_dir: str | Path) -> Path:
    """Refuse an unwritable run directory, or one that already holds another run's results; creates nothing."""
    run_dir = Path(run_dir)
    check_writable(
        run_dir,
        "to the output directory",
        "Choose a writable location with paths.output_root=<dir> (or hydra.run.dir=<dir>).",
    )
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
