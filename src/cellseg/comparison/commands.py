"""The command lines that reproduce a sweep, from the overrides each run recorded."""

from __future__ import annotations

from collections.abc import Sequence

from cellseg.comparison.runs import RunRecord


def _key(override: str) -> str:
    return override.split("=", 1)[0]


def sweep_command(runs: Sequence[RunRecord]) -> str | None:
    """One ``python -m cellseg.train -m ...`` for the runs when their overrides form a full grid, else None."""
    per_run = [dict((_key(o), o.split("=", 1)[1]) for o in r.overrides if "=" in o) for r in runs]
    if not per_run or any(not o for o in per_run):
        return None
    keys = list(dict.fromkeys(k for overrides in per_run for k in overrides))
    if any(set(overrides) != set(keys) for overrides in per_run):
        return None
    values = {k: list(dict.fromkeys(o[k] for o in per_run)) for k in keys}
    grid = 1
    for options in values.values():
        grid *= len(options)
    distinct = {tuple(o[k] for k in keys) for o in per_run}
    if grid != len(distinct):
        return None
    parts = [f"{k}={','.join(v)}" for k, v in values.items()]
    return "python -m cellseg.train -m " + " ".join(parts)


def run_commands(runs: Sequence[RunRecord]) -> list[str]:
    """``python -m cellseg.train <overrides>`` of each run."""
    return ["python -m cellseg.train " + " ".join(r.overrides) for r in runs]
