"""The loader: ``data.num_workers=auto`` resolves to the usable cores per training process, workers
prefetch and persist, and the share of time training waits for data is measured and warned about."""

from __future__ import annotations

from types import SimpleNamespace
from unittest import mock

import pytest
from pytorch_lightning.accelerators import CPUAccelerator, CUDAAccelerator

from cellseg.build import build_datamodule
from cellseg.callbacks.data_wait import DataWait
from cellseg.data.sources import base
from cellseg.errors import ConfigError
from tests.conftest import FAST, compose_config


@pytest.mark.parametrize(
    ("cores", "processes", "workers"), [(16, 1, 15), (16, 4, 3), (2, 1, 1), (1, 1, 0), (4, 8, 0)]
)
def test_auto_workers_are_the_usable_cores_per_process_less_one(monkeypatch, cores, processes, workers):
    monkeypatch.setattr(base, "usable_cores", lambda: cores)
    assert base.resolve_num_workers("auto", processes) == workers


@pytest.mark.parametrize("value", [-1, "many", 1.5, True])
def test_bad_worker_counts_are_named(value):
    with pytest.raises(ConfigError, match=r"data.num_workers is .*expected a count >= 0 or auto"):
        base.resolve_num_workers(value)


def test_auto_workers_reach_the_loader_with_prefetch_and_persistence(monkeypatch):
    monkeypatch.setattr(base, "usable_cores", lambda: 3)
    datamodule = build_datamodule(compose_config([*FAST, "data.num_workers=auto", "data.prefetch_factor=4"]))
    datamodule.setup("fit")
    loader = datamodule.train_dataloader()
    assert (loader.num_workers, loader.prefetch_factor, loader.persistent_workers) == (2, 4, True)
    with pytest.raises(ConfigError, match=r"data\.prefetch_factor is 0"):
        build_datamodule(compose_config([*FAST, "data.prefetch_factor=0"]))


def _epoch(callback: DataWait, trainer, module, waits: list[float], step: float) -> None:
    """One epoch of batches, each taking ``step`` s, the i-th after a wait of waits[i] s (clock mocked)."""
    clock = [100.0]
    with mock.patch("cellseg.callbacks.data_wait.time.perf_counter", side_effect=lambda: clock[0]):
        callback.on_train_epoch_start(trainer, module)
        for index, wait in enumerate(waits):
            clock[0] += wait
            callback.on_train_batch_start(trainer, module, None, index)
            clock[0] += step
            callback.on_train_batch_end(trainer, module, None, None, index)
        callback.on_train_epoch_end(trainer, module)


def test_data_wait_share_is_logged_and_a_starving_gpu_is_warned_about():
    callback, module = DataWait(warn_above=0.10), mock.MagicMock()
    gpu = SimpleNamespace(accelerator=CUDAAccelerator(), current_epoch=3)
    with pytest.warns(UserWarning, match="waited for data 40% of epoch 3's time.*data.num_workers"):
        _epoch(callback, gpu, module, waits=[9.0, 1.0, 1.0], step=1.0)  # the first wait is not counted
    assert callback.share == pytest.approx(2.0 / 5.0)  # 2 s waited, 3 s of steps
    module.log.assert_called_once_with("perf/data_wait", pytest.approx(0.4), on_epoch=True, sync_dist=True)


def test_data_wait_is_quiet_below_the_threshold_and_on_cpu(recwarn):
    callback = DataWait(warn_above=0.10)
    _epoch(
        callback,
        SimpleNamespace(accelerator=CUDAAccelerator(), current_epoch=0),
        mock.MagicMock(),
        [5, 0.05, 0.05],
        1.0,
    )
    _epoch(
        callback,
        SimpleNamespace(accelerator=CPUAccelerator(), current_epoch=0),
        mock.MagicMock(),
        [5, 1.0, 1.0],
        1.0,
    )
    assert callback.share == pytest.approx(0.4) and not [
        w for w in recwarn if "waited for data" in str(w.message)
    ]
