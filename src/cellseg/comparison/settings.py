"""Which config keys a sweep varied, and which runs are replicates of one setting (they differ only in seed).

The axes come from the composed configs the runs saved (``.hydra/config.yaml``), not only from their
command lines: ``channels=brightfield`` and ``channels.specs=[brightfield]`` are the same setting. A
group chosen differently (``channels=cytoplasm`` vs ``channels=brightfield``) is shown by its choice,
and the keys inside that group are then not listed again.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from cellseg.comparison.runs import RunRecord

#: Keys that differ between runs without making a different setting.
REPLICATE_KEY = "seed"
IGNORED_PREFIXES = ("hydra", "paths", "tags", "ckpt_path", "sweep")  # sweep.resume: how, not what


def flatten(node: Any, prefix: str = "") -> dict[str, Any]:
    """``{'a.b': value}`` leaves of a nested config (lists are leaves, shown as written)."""
    if isinstance(node, Mapping):
        out: dict[str, Any] = {}
        for key, value in node.items():
            out.update(flatten(value, f"{prefix}{key}."))
        return out
    return {prefix.rstrip("."): node}


def _shown(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, list):
        return "[" + ",".join(_shown(v) for v in value) + "]"
    return str(value)


@dataclass(frozen=True)
class Axis:
    """One swept key: a config group (``channels``) or a config leaf (``loss.cell_weight``)."""

    key: str
    is_group: bool

    def value_of(self, run: RunRecord, leaves: Mapping[str, Any]) -> Any:
        return run.choices.get(self.key) if self.is_group else leaves.get(self.key)

    def numeric_values(self, values: Sequence[Any]) -> list[float] | None:
        """The values as numbers when every one is a number (a trade-off plot can then use them)."""
        if all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in values):
            return [float(v) for v in values]
        return None


@dataclass
class Setting:
    """Runs that share every swept value: replicates of one configuration, one per seed."""

    values: dict[str, Any]
    runs: list[RunRecord]

    @property
    def label(self) -> str:
        return ", ".join(f"{k}={_shown(v)}" for k, v in self.values.items()) or "all runs"

    @property
    def seeds(self) -> list[int | None]:
        return [r.seed for r in self.runs]


def _ignored(key: str) -> bool:
    return key == REPLICATE_KEY or key.split(".", 1)[0] in IGNORED_PREFIXES


def swept_axes(runs: Sequence[RunRecord]) -> list[Axis]:
    """The group choices and config leaves that take more than one value across ``runs``."""
    leaves = [flatten(r.config) for r in runs]
    groups = sorted({g for r in runs for g in r.choices})
    axes = [Axis(g, True) for g in groups if not _ignored(g) and len({r.choices.get(g) for r in runs}) > 1]
    inside_groups = tuple(f"{a.key}." for a in axes)
    keys = sorted({k for leaf in leaves for k in leaf})
    for key in keys:
        if _ignored(key) or key.startswith(inside_groups) or key in {a.key for a in axes}:
            continue
        if len({repr(leaf.get(key)) for leaf in leaves}) > 1:
            axes.append(Axis(key, False))
    return axes


def group_settings(runs: Sequence[RunRecord], axes: Sequence[Axis]) -> list[Setting]:
    """Runs grouped by their values on ``axes``, in order of first appearance."""
    settings: dict[str, Setting] = {}
    for run in runs:
        leaves = flatten(run.config)
        values = {axis.key: axis.value_of(run, leaves) for axis in axes}
        key = repr(sorted(values.items(), key=lambda item: item[0]))
        settings.setdefault(key, Setting(values, [])).runs.append(run)
    return list(settings.values())
