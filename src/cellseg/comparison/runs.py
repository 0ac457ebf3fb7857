"""Finding the training runs of a sweep and reading what each wrote, without ever modifying a run folder.

A run is a folder with ``metrics.json`` (written by every ``python -m cellseg.train`` from its first
epoch on) or with Hydra's ``.hydra/config.yaml`` of a training job that never got that far. A path may
be a run, a multirun folder, a task folder holding many runs, or a glob of any of these.
"""

from __future__ import annotations

import glob
import json
import math
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from cellseg.errors import DataError
from cellseg.runs import run_status
from cellseg.utils.processes import liveness

#: Keys every metrics.json of this cellseg version has; a file without them is from an older cellseg.
REQUIRED_KEYS = ("status", "monitor", "best", "final", "history")
STAGES = ("best", "final", "test")


@dataclass
class RunRecord:
    """One training run as found on disk.

    ``problem`` says why the run cannot be scored (failed, interrupted, still running, unreadable); the
    run is then listed, never silently dropped.
    """

    path: Path
    config: dict[str, Any] = field(default_factory=dict)
    summary: dict[str, Any] = field(default_factory=dict)
    problem: str | None = None
    hydra_choices: dict[str, str] = field(default_factory=dict)

    @property
    def status(self) -> str:
        if not self.summary:
            return "unreadable" if self.problem else "unknown"
        return run_status(self.summary)

    @property
    def seed(self) -> int | None:
        value = self.config.get("seed", self.summary.get("seed"))
        return int(value) if isinstance(value, int) and not isinstance(value, bool) else None

    @property
    def monitor(self) -> tuple[str, str]:
        """(metric, mode) the run picked its best epoch by, e.g. ('val/dice', 'max')."""
        monitor = self.summary.get("monitor") or {}
        return str(monitor.get("metric", "val/dice")), str(monitor.get("mode", "max"))

    @property
    def choices(self) -> dict[str, str]:
        """Config group -> option (``channels`` -> ``brightfield``), from metrics.json or Hydra's record."""
        choices = self.summary.get("choices") or self.hydra_choices
        return {str(k): str(v) for k, v in choices.items() if not str(k).startswith("hydra")}

    @property
    def overrides(self) -> list[str]:
        return [str(o) for o in self.summary.get("overrides") or []]

    def scores(self, stage: str) -> dict[str, float]:
        """Scores of ``stage`` without their split prefix: ``{'dice': 0.93, ...}`` (NaN/null dropped)."""
        entry = self.summary.get(stage) or {}
        prefix = "test/" if stage == "test" else "val/"
        return {
            key[len(prefix) :]: float(value)
            for key, value in entry.items()
            if key.startswith(prefix) and isinstance(value, (int, float)) and math.isfinite(value)
        }

    def curve(self, metric: str) -> list[tuple[int, float]]:
        """(epoch, value) of ``val/<metric>`` over the run's history."""
        points = []
        for entry in self.summary.get("history") or []:
            value = entry.get(f"val/{metric}")
            if isinstance(value, (int, float)) and math.isfinite(value):
                points.append((int(entry.get("epoch", len(points))), float(value)))
        return points

    @property
    def best_checkpoint(self) -> Path | None:
        best = (self.summary.get("checkpoints") or {}).get("best")
        candidates = [Path(best)] if best else []
        candidates.append(self.path / "checkpoints" / "best.ckpt")  # the run folder may have moved
        return next((c for c in candidates if c.is_file()), None)


def _is_training_config(path: Path) -> bool:
    """A Hydra job config of ``cellseg.train`` (evaluate and predict folders compose it too, with ``ckpt``)."""
    config = _read_yaml(path)
    return "trainer" in config and "ckpt" not in config


def is_run(folder: Path) -> bool:
    hydra_config = folder / ".hydra" / "config.yaml"
    return (folder / "metrics.json").is_file() or (
        hydra_config.is_file() and _is_training_config(hydra_config)
    )


def find_run_folders(paths: Sequence[str | Path]) -> list[Path]:
    """Every run under each path (a run, a multirun or task folder, or a glob), each once, sorted."""
    found: dict[Path, None] = {}
    for spec in paths:
        matches = sorted(glob.glob(str(Path(spec).expanduser()))) if glob.has_magic(str(spec)) else [spec]
        if not matches:
            raise DataError(f"'{spec}' matches nothing; give a run folder, a multirun folder or a glob.")
        for match in matches:
            root = Path(match)
            if not root.exists():
                raise DataError(f"'{root}' does not exist; give a run folder, a multirun folder or a glob.")
            for folder in _runs_under(root):
                found[folder.resolve()] = None
    return sorted(found)


def _runs_under(root: Path) -> Iterable[Path]:
    if is_run(root):
        yield root  # a run's own subfolders (eval/, tensorboard/) hold no further runs
        return
    if root.is_dir():
        for child in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
            yield from _runs_under(child)


def _read_yaml(path: Path) -> dict[str, Any]:
    """A YAML mapping, or {} when the file is missing or unreadable (the run is then judged by metrics.json)."""
    try:
        content = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError):
        return {}
    return content if isinstance(content, dict) else {}


def _hydra_choices(folder: Path) -> dict[str, str]:
    runtime = (_read_yaml(folder / ".hydra" / "hydra.yaml").get("hydra") or {}).get("runtime") or {}
    return {str(k): str(v) for k, v in (runtime.get("choices") or {}).items()}


def read_run(folder: Path) -> RunRecord:
    """The run's config and metrics.json; an unreadable or unfinished run gets a ``problem``."""
    record = RunRecord(
        folder, config=_read_yaml(folder / ".hydra" / "config.yaml"), hydra_choices=_hydra_choices(folder)
    )
    metrics = folder / "metrics.json"
    if not metrics.is_file():
        record.problem = "no metrics.json: the run stopped before its first validation"
        return record
    try:
        summary = json.loads(metrics.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        record.problem = f"{metrics}: truncated or not JSON ({error})"
        return record
    if not isinstance(summary, Mapping):
        record.problem = f"{metrics}: not a cellseg run summary (a JSON {type(summary).__name__})"
        return record
    record.summary = dict(summary)
    missing = [key for key in REQUIRED_KEYS if key not in summary]
    if missing:
        record.problem = f"{metrics}: written by an older cellseg (no {', '.join(missing)})"
    elif (status := record.status) in ("running", "killed"):
        epochs = len(summary.get("history") or [])
        written = time.strftime("%Y-%m-%d %H:%M", time.localtime(metrics.stat().st_mtime))
        process = summary.get("process") or {}
        if status == "killed":
            state = f"killed: its process ({process['pid']} on {process['host']}) is gone"
        elif liveness(process) == "alive":
            state = "still running"
        else:  # written on another host, or by a cellseg that recorded no process
            state = "still running, or killed"
        record.problem = f"{state} (metrics.json last written {written}, {epochs} epoch(s))"
    elif summary["status"] != "completed":
        error = summary.get("error")
        record.problem = f"{summary['status']}" + (f": {error}" if error else "")
    return record


def read_runs(folders: Sequence[Path], progress: bool = True) -> list[RunRecord]:
    from tqdm import tqdm

    return [read_run(folder) for folder in tqdm(folders, desc="runs", unit="run", disable=not progress)]
