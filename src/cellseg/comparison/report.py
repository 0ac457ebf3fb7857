"""``report.html``: one self-contained page (images embedded) with the tables, the plots and the commands."""

from __future__ import annotations

import base64
import html
from collections.abc import Sequence
from pathlib import Path

from cellseg.comparison.commands import run_commands, sweep_command
from cellseg.comparison.runs import RunRecord
from cellseg.comparison.summary import Comparison
from cellseg.comparison.tables import body, header

STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1200px; color: #222; }
table { border-collapse: collapse; font-size: 0.85em; margin: 1em 0; }
th, td { border: 1px solid #ccc; padding: 0.3em 0.6em; text-align: right; }
td:nth-child(2), th:nth-child(2), td:last-child { text-align: left; }
tr.best { background: #e3f2e1; font-weight: bold; }
pre { background: #f5f5f5; padding: 0.8em; overflow-x: auto; white-space: pre-wrap; }
figure { display: inline-block; vertical-align: top; margin: 0.4em; max-width: 48%; }
figure.wide { max-width: 100%; }
img { max-width: 100%; border: 1px solid #eee; }
.note { color: #555; }
"""


def _image(path: Path) -> str:
    data = base64.b64encode(path.read_bytes()).decode()
    wide = ' class="wide"' if path.stem in ("panel",) or path.stem.startswith("curves") else ""
    return f'<figure{wide}><img alt="{html.escape(path.stem)}" src="data:image/png;base64,{data}"></figure>'


def _table(comparison: Comparison) -> str:
    head = "".join(f"<th>{html.escape(c)}</th>" for c in header(comparison))
    rows = []
    for cells in body(comparison):
        css = ' class="best"' if cells[0] == "1" else ""
        rows.append(f"<tr{css}>" + "".join(f"<td>{html.escape(c)}</td>" for c in cells) + "</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"


def render(
    comparison: Comparison,
    runs: Sequence[RunRecord],
    plots: Sequence[Path],
    title: str,
    extra_notes: Sequence[str],
) -> str:
    notes = [*comparison.notes, *extra_notes]
    problems = "".join(
        f"<li><code>{html.escape(str(r.path))}</code>: {html.escape(str(r.problem))}</li>"
        for r in comparison.problems
    )
    sweep = sweep_command(runs)
    commands = html.escape("\n".join(run_commands(runs)))
    parts = [
        f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>",
        f"<style>{STYLE}</style></head><body>",
        f"<h1>{html.escape(title)}</h1>",
        f"<p>{len(runs)} run(s), {len(comparison.rows)} setting(s); stage <b>{comparison.stage}</b>, ranked by "
        f"<b>{html.escape(comparison.monitor)}</b> ({comparison.mode}). Cells: mean ± SD [95 % bootstrap "
        "interval of the mean]; paired: mean difference to the best setting on shared seeds, its interval "
        "and the sign-flip permutation p-value.</p>",
        _table(comparison),
        "".join(f"<p class='note'>{html.escape(n)}</p>" for n in notes),
        f"<h2>Runs not compared</h2><ul>{problems}</ul>" if problems else "",
        "<h2>Plots</h2>",
        "".join(_image(p) for p in plots),
        "<h2>Reproduce</h2>",
        f"<pre>{html.escape(sweep)}</pre>"
        if sweep
        else "<p>The runs do not form one grid sweep; each run's command:</p>",
        f"<details{' open' if not sweep else ''}><summary>every run's command</summary><pre>{commands}</pre></details>",
        "</body></html>",
    ]
    return "\n".join(p for p in parts if p)
