"""Where a run's messages go: everything to its ``train.log``, the console kept readable.

Lightning gives its own loggers a private console handler when it is imported before Hydra sets up
logging, so none of its messages reached the run's log file; :func:`route_lightning_logs` hands them to
the handlers Hydra configured. Its advertising tips are dropped.
"""

from __future__ import annotations

import logging

LIGHTNING_LOGGERS = ("pytorch_lightning", "lightning_fabric", "lightning.pytorch", "lightning.fabric")
#: Where Lightning's ``rank_zero_info`` messages (its tips among them) are logged.
RANK_ZERO_LOGGERS = ("pytorch_lightning.utilities.rank_zero", "lightning_fabric.utilities.rank_zero")


class DropLightningTips(logging.Filter):
    """Lightning's '💡 Tip: try installing ...' lines: advertising, not information about the run."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("💡 Tip:")


class ConsoleFilter(logging.Filter):
    """For the console handler: drops records logged with ``extra={"console": False}``.

    A run's per-epoch line goes to the log file always, and to the console only where no progress bar
    already shows the same numbers.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        return getattr(record, "console", True)


def route_lightning_logs() -> None:
    """Send Lightning's messages through the root logger's handlers (Hydra's console and log file)."""
    if not logging.getLogger().handlers:
        return  # no logging configured (a library call outside Hydra): leave Lightning's own handler
    for name in LIGHTNING_LOGGERS:
        logger = logging.getLogger(name)
        for handler in list(logger.handlers):
            if type(handler) is logging.StreamHandler:  # the private console handler Lightning added
                logger.removeHandler(handler)
        logger.propagate = True
    for name in RANK_ZERO_LOGGERS:
        logger = logging.getLogger(name)
        if not any(isinstance(f, DropLightningTips) for f in logger.filters):
            logger.addFilter(DropLightningTips())
