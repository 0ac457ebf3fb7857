"""The per-epoch line of a run's log: the monitored score with its best so far, and the main scores."""

from __future__ import annotations

import logging

import torch

from cellseg.callbacks.epoch_log import epoch_line
from cellseg.utils.logs import ConsoleFilter, DropLightningTips


def test_the_line_names_the_epoch_the_monitor_and_its_best_and_skips_what_was_not_logged():
    metrics = {"val/dice": torch.tensor(0.93), "val/loss": 0.21, "train/loss": 0.3, "val/ap50": float("nan")}
    line = epoch_line(2, 10, metrics, "val/dice", 0.95, 12.34)
    assert line == "epoch 3/10: train/loss 0.3, val/loss 0.21, val/dice 0.93 (best 0.95), 12.3 s"
    assert epoch_line(0, -1, {}, "val/dice", None, 1.0) == "epoch 1: no scores yet, 1.0 s"


def test_a_monitor_other_than_dice_comes_first_and_dice_still_shows():
    metrics = {"val/dice": 0.9, "val/v_rand": 0.8}
    assert epoch_line(0, 1, metrics, "val/v_rand", 0.8, 0.5) == (
        "epoch 1/1: val/v_rand 0.8 (best 0.8), val/dice 0.9, 0.5 s"
    )


def _record(msg: str, **extra: object) -> logging.LogRecord:
    record = logging.LogRecord("x", logging.INFO, __file__, 1, msg, None, None)
    record.__dict__.update(extra)
    return record


def test_console_filter_drops_only_lines_marked_for_the_file_and_lightning_tips_are_dropped():
    assert ConsoleFilter().filter(_record("epoch 1", console=False)) is False
    assert ConsoleFilter().filter(_record("epoch 1", console=True)) and ConsoleFilter().filter(_record("x"))
    assert not DropLightningTips().filter(_record("💡 Tip: For seamless cloud logging, try installing"))
    assert DropLightningTips().filter(_record("GPU available: False, used: False"))
