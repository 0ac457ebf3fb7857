"""``python -m cellseg.compare``: a sweep's runs as a ranked, replicated, plotted comparison.

    python -m cellseg.compare multirun/2026-12-01/10-00-00
    python -m cellseg.compare 'outputs/train/*' metrics=[dice,ap50] stage=final output=cmp/ overwrite=true

Paths are runs, multirun or task folders, or globs; ``key=value`` words are options (see OPTIONS).
Replicates are the runs that differ only in ``seed``; the swept keys come from the runs' saved configs.
Writes ``summary.csv``, ``summary.md``, ``plots/`` and ``report.html`` to ``<sweep>/comparison/`` (or
``output``) and prints the summary; nothing in the run folders is touched.
"""

from __future__ import annotations

import difflib
import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf
from rich.console import Console

from cellseg.cli import exit_on_bad_input
from cellseg.comparison import compare_runs, default_output, find_run_folders, read_runs, write_comparison
from cellseg.comparison.tables import rich_table
from cellseg.errors import ConfigError
from cellseg.inference.tiling import TileSettings
from cellseg.inference.writers import check_output_folder

log = logging.getLogger("cellseg")

#: Option -> (default, what it does).
OPTIONS: dict[str, tuple[Any, str]] = {
    "output": (None, "folder to write to (default: <sweep>/comparison)"),
    "overwrite": (False, "replace the files of an earlier comparison in that folder"),
    "metrics": (None, "metrics to summarise, e.g. [dice,ap50] (default: the monitor and the data's)"),
    "stage": ("best", "best (each run's best epoch), final (its last) or test (best checkpoint on test)"),
    "panel_images": (3, "validation images in the prediction panel (0: no panel)"),
    "tile_size": (512, "tile size of the panel's predictions"),
    "device": ("auto", "device of the panel's predictions (auto, cpu, cuda)"),
    "progress": (True, "progress bars"),
}


def parse_args(args: Sequence[str]) -> tuple[list[str], dict[str, Any]]:
    """Paths and options; an unknown option is an error that names the valid ones."""
    paths, given = [], []
    for arg in args:
        key = arg.split("=", 1)[0]
        if "=" in arg and (key in OPTIONS or not Path(arg).exists()):
            if key not in OPTIONS:
                close = difflib.get_close_matches(key, OPTIONS, n=1)
                hint = f" Did you mean {close[0]}?" if close else ""
                raise ConfigError(f"Unknown option '{key}'; options: {', '.join(OPTIONS)}.{hint}")
            given.append(arg)
        else:
            paths.append(arg)
    if not paths:
        raise ConfigError(
            "Give the sweep to compare: python -m cellseg.compare <multirun folder | run | glob> ..."
        )
    options = {k: v for k, (v, _) in OPTIONS.items()}
    options.update(OmegaConf.to_container(OmegaConf.from_dotlist(given)))
    return paths, options


def compare(args: Sequence[str]) -> dict[str, Path]:
    paths, options = parse_args(args)
    folders = find_run_folders(paths)
    if not folders:
        raise ConfigError(f"No training runs (metrics.json or .hydra/config.yaml) under {', '.join(paths)}.")
    output = Path(options["output"]).expanduser() if options["output"] else default_output(folders)
    check_output_folder(output, bool(options["overwrite"]))
    runs = read_runs(folders, progress=bool(options["progress"]))
    comparison = compare_runs(runs, options["metrics"], str(options["stage"]))
    tiles = TileSettings(size=int(options["tile_size"]))
    written = write_comparison(
        comparison,
        runs,
        output,
        int(options["panel_images"]),
        tiles,
        str(options["device"]),
        bool(options["progress"]),
    )
    console = Console(width=None if sys.stdout.isatty() else 200)  # a log file keeps whole labels
    console.print(rich_table(comparison, f"cellseg comparison of {len(runs)} run(s): {output}"))
    for line in comparison.notes + [f"not compared: {r.path}: {r.problem}" for r in comparison.problems]:
        console.print(line)
    console.print(
        f"written: {written['summary.csv']}, summary.md, report.html and {len(written) - 3} plot(s)"
    )
    return written


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if {"-h", "--help"} & set(sys.argv[1:]):
        print(__doc__)
        print("options:\n" + "\n".join(f"  {k}={v!r:<8} {text}" for k, (v, text) in OPTIONS.items()))
        return
    exit_on_bad_input(compare)(sys.argv[1:])


if __name__ == "__main__":
    main()
