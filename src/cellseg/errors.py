"""Errors that mean "your input is wrong", reported to the user as one line without a traceback.

Each also derives from the built-in exception a caller would expect (ValueError, FileNotFoundError,
...), so code that catches those keeps working.
"""

from __future__ import annotations


class CellsegError(Exception):
    """Bad input (config, files, paths), found before or while setting a run up."""


class ConfigError(CellsegError, ValueError):
    """A config option, key or value that cellseg cannot use."""


class OutputDirError(CellsegError, PermissionError):
    """The run directory cannot be written."""


class RunExistsError(CellsegError, FileExistsError):
    """The run directory already holds another run's results."""


class CheckpointNotFoundError(CellsegError, FileNotFoundError):
    """A checkpoint given on the command line does not exist."""


def find_cellseg_error(error: BaseException | None) -> CellsegError | None:
    """The CellsegError behind ``error``, also when a library (e.g. Hydra's instantiate) wrapped it."""
    seen: set[int] = set()
    while error is not None and id(error) not in seen:
        if isinstance(error, CellsegError):
            return error
        seen.add(id(error))
        error = error.__cause__ or error.__context__
    return None


class DataError(CellsegError, ValueError):
    """A data file that is missing, unreadable, or does not fit the configured layout."""
