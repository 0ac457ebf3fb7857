"""The comparison of a sweep: one row per setting with n, mean, SD and a 95 % bootstrap interval per
metric, ranked by the monitored metric, and each setting compared seed by seed with the best one."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

from cellseg.comparison.runs import STAGES, RunRecord
from cellseg.comparison.settings import Axis, Setting, group_settings, swept_axes
from cellseg.comparison.statistics import (
    Interval,
    PairedComparison,
    bootstrap_interval,
    mean_and_sd,
    paired_comparison,
)
from cellseg.errors import ConfigError, DataError

#: Shown by default when the runs logged them (after the monitored metric).
DEFAULT_METRICS = ("dice", "iou", "acc_*", "ap50", "pq", "v_rand", "v_info")


@dataclass(frozen=True)
class MetricSummary:
    values: tuple[float, ...]
    mean: float
    sd: float
    interval: Interval | None

    @classmethod
    def of(cls, values: Sequence[float]) -> MetricSummary:
        mean, sd = mean_and_sd(values)
        return cls(tuple(values), mean, sd, bootstrap_interval(values))


@dataclass
class SettingRow:
    setting: Setting
    metrics: dict[str, MetricSummary]
    rank: int = 0
    #: Whether the monitored metric's interval is clear of the best setting's (None: no intervals).
    distinguishable: bool | None = None
    #: Metric -> paired comparison with the best setting on shared seeds (None: no shared seed).
    paired: dict[str, PairedComparison | None] = field(default_factory=dict)

    @property
    def label(self) -> str:
        return self.setting.label

    @property
    def n(self) -> int:
        return len(self.setting.runs)


@dataclass
class Comparison:
    rows: list[SettingRow]
    metrics: list[str]
    monitor: str
    mode: str
    stage: str
    axes: list[Axis]
    problems: list[RunRecord]
    notes: list[str]

    @property
    def best(self) -> SettingRow:
        return self.rows[0]


def _choose_metrics(requested: Sequence[str] | None, available: set[str], monitor: str) -> list[str]:
    if requested:
        unknown = [m for m in requested if m not in available]
        if unknown:
            raise ConfigError(
                f"metrics: no run logged {', '.join(unknown)}; the runs logged: {', '.join(sorted(available))}."
            )
        return list(dict.fromkeys(requested))
    chosen = [monitor] if monitor in available else []
    for pattern in DEFAULT_METRICS:
        if pattern.endswith("*"):
            chosen += sorted(m for m in available if m.startswith(pattern[:-1]))
        elif pattern in available:
            chosen.append(pattern)
    return list(dict.fromkeys(chosen))


def compare_runs(
    runs: Sequence[RunRecord], metrics: Sequence[str] | None = None, stage: str = "best"
) -> Comparison:
    """Group the completed runs into settings and summarise them; every other run is kept as a problem."""
    if stage not in STAGES:
        raise ConfigError(f"stage is '{stage}'; expected one of {', '.join(STAGES)}.")
    scored = [r for r in runs if r.problem is None]
    problems = [r for r in runs if r.problem is not None]
    if not scored:
        listing = "; ".join(f"{r.path}: {r.problem}" for r in problems[:5])
        raise DataError(f"None of the {len(runs)} run(s) can be compared: {listing}")
    monitor_key, mode = scored[0].monitor
    monitor = monitor_key.split("/", 1)[-1]
    notes = []
    if len({r.monitor for r in scored}) > 1:
        notes.append(
            f"The runs monitor different metrics; ranked by {monitor_key} ({mode}), the first run's."
        )
    available = {m for r in scored for m in r.scores(stage)}
    if not available:
        raise DataError(
            f"No completed run has '{stage}' scores"
            + (
                "; the data has no test split, or test=false: use stage=best or stage=final."
                if stage == "test"
                else "."
            )
        )
    chosen = _choose_metrics(metrics, available, monitor)
    axes = swept_axes([r for r in runs if r.config])
    differing = [
        a.key for a in axes if a.key in ("data", "model") or a.key.startswith(("data._target_", "model.arch"))
    ]
    if differing:
        notes.append(f"The runs differ in data set or model ({', '.join(differing)}); compared anyway.")
    rows = []
    for setting in group_settings(scored, axes):
        summaries = {}
        for metric in chosen:
            values = [s[metric] for s in (r.scores(stage) for r in setting.runs) if metric in s]
            if values:
                summaries[metric] = MetricSummary.of(values)
        rows.append(SettingRow(setting, summaries))
    sign = -1.0 if mode == "max" else 1.0
    ranking_metric = monitor if monitor in chosen else chosen[0]
    rows.sort(
        key=lambda r: sign * r.metrics[ranking_metric].mean if ranking_metric in r.metrics else math.inf
    )
    best = rows[0]
    for rank, row in enumerate(rows, start=1):
        row.rank = rank
        if row is best:
            continue
        mine, theirs = row.metrics.get(ranking_metric), best.metrics.get(ranking_metric)
        if mine and theirs and mine.interval and theirs.interval:
            row.distinguishable = not mine.interval.overlaps(theirs.interval)
        for metric in chosen:
            row.paired[metric] = paired_comparison(
                _by_seed(row.setting, metric, stage), _by_seed(best.setting, metric, stage)
            )
    if all(row.n == 1 for row in rows):
        notes.append("One run per setting: no intervals and no paired tests (sweep seed=1,2,3 for them).")
    return Comparison(rows, chosen, ranking_metric, mode, stage, axes, problems, notes)


def _by_seed(setting: Setting, metric: str, stage: str) -> dict[int, float]:
    return {
        r.seed: s[metric]
        for r, s in ((r, r.scores(stage)) for r in setting.runs)
        if r.seed is not None and metric in s
    }
