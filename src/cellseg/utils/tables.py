"""The one score table every command prints: metrics as rows, one column per set of scores."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

from rich.console import Console
from rich.table import Table


def score_table(
    title: str, columns: Sequence[tuple[str, Mapping[str, float | None]]], metrics: Sequence[str]
) -> Table:
    """``metrics`` as rows and one column per (heading, scores); a missing or NaN score shows as ``-``."""
    table = Table(title=title, title_justify="left")
    table.add_column("metric")
    for heading, _ in columns:
        table.add_column(heading, justify="right")
    for name in metrics:
        cells = []
        for _, scores in columns:
            value = scores.get(name)
            cells.append("-" if value is None or not math.isfinite(value) else f"{value:.4f}")
        table.add_row(name, *cells)
    return table


def print_score_table(
    title: str,
    columns: Sequence[tuple[str, Mapping[str, float | None]]],
    metrics: Sequence[str],
    console: Console | None = None,
) -> None:
    (console or Console()).print(score_table(title, columns, metrics))
