"""Turning a sweep into an answer: which setting segments best, by how much, and how sure we are.

- :mod:`~.runs`: find a sweep's runs and read their metrics.json and configs (never writing there);
- :mod:`~.settings`: the swept axes (from the saved configs) and the replicates of each setting;
- :mod:`~.statistics`: mean, SD, exact/seeded bootstrap intervals and paired sign-flip tests;
- :mod:`~.summary`: the ranked comparison; :mod:`~.tables`: CSV, Markdown and terminal tables;
- :mod:`~.plots` and :mod:`~.panel`: bar charts, trade-off plots, validation curves, a prediction panel;
- :mod:`~.report`: the self-contained ``report.html``; :mod:`~.commands`: the commands that reproduce it;
- :mod:`~.write`: everything written into the comparison folder.
"""

from cellseg.comparison.runs import RunRecord, find_run_folders, read_run, read_runs
from cellseg.comparison.summary import Comparison, compare_runs
from cellseg.comparison.write import default_output, write_comparison

__all__ = [
    "Comparison",
    "RunRecord",
    "compare_runs",
    "default_output",
    "find_run_folders",
    "read_run",
    "read_runs",
    "write_comparison",
]
