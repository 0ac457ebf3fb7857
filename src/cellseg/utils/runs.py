"""The run-directory contract: what a run checks before it starts and what it reports when it ends."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from cellseg.errors import CheckpointNotFoundError, RunExistsError
from cellseg.utils.io import check_writable


def prepare_run_dir(run_dir: str | Path) -> Path:
    """Refuse an unwritable directory or one that already holds another run's results."""
    run_dir = check_writable(run_dir)
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


def print_metrics_table(summary: Mapping[str, Any], console: Console | None = None) -> None:
    """Final, best and test scores side by side, one metric per row."""
    best, final = summary.get("best") or {}, summary.get("final") or {}
    test = summary.get("test") or {}
    names = sorted({k.split("/", 1)[1] for k in (*best, *final, *test) if "/" in k})
    table = Table(title=f"cellseg run: {summary.get('run_dir', '')}", title_justify="left")
    table.add_column("metric")
    columns = [
        (f"best (epoch {best.get('epoch')})", best, "val/"),
        (f"final (epoch {final.get('epoch')})", final, "val/"),
    ]
    if test:
        columns.append(("test (best ckpt)", test, "test/"))
    for title, _, _ in columns:
        table.add_column(title, justify="right")
    for name in names:
        row = [name]
        for _, scores, prefix in columns:
            value = scores.get(prefix + name)
            row.append("-" if value is None else f"{value:.4f}")
        table.add_row(*row)
    (console or Console()).print(table)
    print(
        f"epochs run: {summary.get('epochs_run')}, wall time: {summary.get('wall_time_s')} s, "
        f"status: {summary.get('status')}"
    )
