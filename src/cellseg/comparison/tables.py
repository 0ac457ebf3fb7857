"""The comparison as tables: ``summary.csv`` (every number), ``summary.md`` and the terminal's rich table."""

from __future__ import annotations

import math
from typing import Any

from rich.table import Table

from cellseg.comparison.statistics import Interval
from cellseg.comparison.summary import Comparison, SettingRow


def _number(value: float | None, digits: int = 4) -> str:
    return "-" if value is None or not math.isfinite(value) else f"{value:.{digits}f}"


def _interval(interval: Interval | None) -> str:
    return "" if interval is None else f"[{_number(interval.low)}, {_number(interval.high)}]"


def verdict(row: SettingRow) -> str:
    """``best``; ``not distinguishable`` when its interval overlaps the best's; ``worse``; or ``-``."""
    if row.rank == 1:
        return "best"
    if row.distinguishable is None:
        return "-"
    return "worse" if row.distinguishable else "not distinguishable"


def csv_rows(comparison: Comparison) -> list[dict[str, Any]]:
    """One row per setting: its swept values, n and seeds, then mean, SD and interval of every metric
    and its paired difference to the best setting."""
    rows = []
    for row in comparison.rows:
        out: dict[str, Any] = {"rank": row.rank, "setting": row.label, "verdict": verdict(row)}
        out.update({axis.key: row.setting.values.get(axis.key) for axis in comparison.axes})
        out["n"] = row.n
        out["seeds"] = " ".join(str(s) for s in row.setting.seeds)
        for metric in comparison.metrics:
            summary = row.metrics.get(metric)
            out[f"{metric}_mean"] = summary.mean if summary else None
            out[f"{metric}_sd"] = summary.sd if summary else None
            out[f"{metric}_ci_low"] = summary.interval.low if summary and summary.interval else None
            out[f"{metric}_ci_high"] = summary.interval.high if summary and summary.interval else None
            paired = row.paired.get(metric)
            out[f"{metric}_diff_vs_best"] = paired.mean_difference if paired else None
            out[f"{metric}_diff_ci_low"] = paired.interval.low if paired and paired.interval else None
            out[f"{metric}_diff_ci_high"] = paired.interval.high if paired and paired.interval else None
            out[f"{metric}_p_vs_best"] = paired.p_value if paired else None
        rows.append(out)
    return rows


def _cell(row: SettingRow, metric: str) -> str:
    summary = row.metrics.get(metric)
    if summary is None:
        return "-"
    text = _number(summary.mean)
    if math.isfinite(summary.sd):
        text += f" ± {_number(summary.sd)}"
    return f"{text} {_interval(summary.interval)}".strip()


def _paired_cell(row: SettingRow, metric: str) -> str:
    paired = row.paired.get(metric)
    if paired is None:
        return "-"
    return f"{paired.mean_difference:+.4f} {_interval(paired.interval)} p={paired.p_value:.3f} (n={len(paired.seeds)})"


def header(comparison: Comparison) -> list[str]:
    monitor = comparison.monitor
    return [
        "rank",
        "setting",
        "n",
        *[f"{m} ({comparison.mode})" if m == monitor else m for m in comparison.metrics],
        f"{monitor}: paired vs best",
        "verdict",
    ]


def body(comparison: Comparison) -> list[list[str]]:
    return [
        [
            str(row.rank),
            row.label,
            str(row.n),
            *[_cell(row, m) for m in comparison.metrics],
            _paired_cell(row, comparison.monitor),
            verdict(row),
        ]
        for row in comparison.rows
    ]


def markdown(comparison: Comparison) -> str:
    """The summary as a Markdown table with the notes and the runs that could not be compared."""
    columns = header(comparison)
    lines = [
        f"Stage: {comparison.stage}; mean ± SD [95 % bootstrap interval of the mean] over the replicates; "
        f"ranked by {comparison.monitor} ({comparison.mode}); paired: mean difference to the best setting "
        "on the seeds both ran, its interval and the sign-flip permutation p-value.",
        "",
        "| " + " | ".join(columns) + " |",
        "|" + "|".join(" --- " for _ in columns) + "|",
        *("| " + " | ".join(cells) + " |" for cells in body(comparison)),
    ]
    lines += [""] + [f"- {note}" for note in comparison.notes] if comparison.notes else []
    if comparison.problems:
        lines += ["", "Runs not compared:", ""]
        lines += [f"- `{run.path}`: {run.problem}" for run in comparison.problems]
    return "\n".join(lines) + "\n"


def rich_table(comparison: Comparison, title: str) -> Table:
    """The terminal's compact view: the monitored metric in full, the others as means."""
    monitor = comparison.monitor
    table = Table(title=title, title_justify="left")
    table.add_column("#", justify="right")
    table.add_column("setting")
    table.add_column("n", justify="right")
    table.add_column(f"{monitor} ({comparison.mode})", justify="right")
    others = [m for m in comparison.metrics if m != monitor]
    for metric in others:
        table.add_column(metric, justify="right")
    table.add_column("vs best (paired)", justify="right")
    table.add_column("verdict")
    for row in comparison.rows:
        means = [_number(row.metrics[m].mean) if m in row.metrics else "-" for m in others]
        paired = row.paired.get(monitor)
        versus = "-" if paired is None else f"{paired.mean_difference:+.4f} p={paired.p_value:.2f}"
        cells = [str(row.rank), row.label, str(row.n), _cell(row, monitor), *means, versus, verdict(row)]
        table.add_row(*cells, style="bold green" if row.rank == 1 else None)
    return table
