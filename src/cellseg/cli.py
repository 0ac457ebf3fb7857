"""What every ``python -m cellseg.<command>`` shares: early checks and one-line errors for bad input."""

from __future__ import annotations

import functools
import logging
import sys
import warnings
from collections.abc import Callable, Sequence
from typing import TypeVar

from omegaconf import DictConfig

from cellseg.config import check_command_line
from cellseg.errors import CellsegError, find_cellseg_error

log = logging.getLogger("cellseg")
Result = TypeVar("Result")


def exit_on_bad_input(task: Callable[..., Result]) -> Callable[..., Result]:
    """Run ``task``; bad input (a CellsegError, also when wrapped) is logged as one line and exits 2."""

    @functools.wraps(task)
    def wrapper(*args: object, **kwargs: object) -> Result:
        try:
            return task(*args, **kwargs)
        except Exception as error:
            bad_input = find_cellseg_error(error)
            if bad_input is None:
                raise
            log.error("cellseg: error: %s", bad_input)  # on the console and in the run's log file
            sys.exit(2)

    return wrapper


def run_command(
    config_name: str,
    hydra_main: Callable[[], object],
    job_checks: Sequence[Callable[[DictConfig], None]] = (),
) -> None:
    """Check the command line against the ``config_name`` primary config, then hand over to Hydra.

    ``job_checks`` run on the composed config of the (first) job, before Hydra creates any folder.
    """
    # Lightning 2.6 on torch >= 2.10 warns about its own use of a deprecated pytree API on every run.
    warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\)")
    try:
        check_command_line(sys.argv[1:], config_name=config_name, job_checks=job_checks)
    except CellsegError as error:
        print(f"cellseg: error: {error}", file=sys.stderr)
        sys.exit(2)
    hydra_main()
