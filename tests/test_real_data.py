"""One-epoch runs on the real data sets in ../shared/data (skipped in a user's fresh clone)."""

from __future__ import annotations

import pytest

from cellseg.build import build_datamodule
from cellseg.training import train
from tests.conftest import SHARED_DATA, TINY_ISBI, compose_config

FAST_REAL = [
    "model.encoder=resnet18",
    "trainer.max_epochs=1",
    "trainer.enable_progress_bar=false",
    "trainer.num_sanity_val_steps=0",
    "callbacks=minimal",
    "data.crop_size=128",
]


@pytest.mark.slow
@pytest.mark.skipif(not (SHARED_DATA / "isbi2012").is_dir(), reason="needs ../shared/data/isbi2012")
def test_isbi_trains_on_slices_0_24_and_validates_on_25_29(tmp_path):
    cfg = compose_config(["data=isbi", f"data.root={SHARED_DATA / 'isbi2012'}", *FAST_REAL], run_dir=tmp_path)
    datamodule = build_datamodule(cfg)
    assert list(datamodule.dataset("val").samples.names) == [f"train-volume.tif[{i}]" for i in range(25, 30)]
    assert len(datamodule.dataset("train").samples) == 25
    summary = train(cfg)
    assert summary["status"] == "completed"
    assert 0.0 <= summary["final"]["val/dice"] <= 1.0
    assert "test" not in summary  # the test volume has no public labels


@pytest.mark.slow
@pytest.mark.skipif(
    not (SHARED_DATA / "brightfield-zstack").is_dir(), reason="needs ../shared/data/brightfield-zstack"
)
def test_brightfield_stack_learns_dapi_nuclei_from_brightfield(tmp_path):
    cfg = compose_config(
        ["data=brightfield_zstack", f"data.root={SHARED_DATA / 'brightfield-zstack'}", *FAST_REAL],
        run_dir=tmp_path,
    )
    val = build_datamodule(cfg).dataset("val")
    assert val[0]["image"].shape[0] == 1  # brightfield only: DAPI is the target, not an input
    nuclei = float((val[0]["mask"] == 1).float().mean())
    assert 0.01 < nuclei < 0.2  # Otsu on DAPI finds nuclei, not background or noise
    summary = train(cfg)
    assert summary["status"] == "completed"
    assert 0.0 <= summary["final"]["val/dice"] <= 1.0


@pytest.mark.skipif(not (SHARED_DATA / "isbi2012").is_dir(), reason="needs ../shared/data/isbi2012")
def test_isbi_test_volume_predicts_to_a_30_page_submission_stack(tmp_path):
    import numpy as np
    import tifffile
    from hydra import compose, initialize_config_dir

    from cellseg.config import config_dir
    from cellseg.predict import predict
    from tests.inference_helpers import write_checkpoint

    ckpt = write_checkpoint(tmp_path / "em.ckpt")  # a one-channel EM model (untrained: the format is tested)
    volume = SHARED_DATA / "isbi2012" / "test-volume.tif"
    overrides = [f"ckpt={ckpt}", f"input={volume}", f"output={tmp_path / 'out'}", "progress=false"]
    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        predict(compose("predict", overrides=overrides))
    submission = tifffile.imread(tmp_path / "out" / "probabilities" / "test-volume.tif")
    assert submission.shape == (30, 512, 512) and submission.dtype == np.float32
    assert submission.min() >= 0.0 and submission.max() <= 1.0
    assert tifffile.imread(tmp_path / "out" / "masks" / "test-volume.tif").shape == (30, 512, 512)


@pytest.mark.slow
@pytest.mark.skipif(not (SHARED_DATA / "isbi2012").is_dir(), reason="needs ../shared/data/isbi2012")
def test_isbi_unet_experiment_trains_evaluates_and_predicts_end_to_end(tmp_path):
    """One short epoch of experiment=isbi_unet, then evaluate and predict through the real commands."""
    import json

    from tests.conftest import run_cli

    run = tmp_path / "run"
    train_args = [
        *TINY_ISBI,
        "test=false",
        f"hydra.run.dir={run}",
    ]
    assert run_cli(train_args, tmp_path).returncode == 0
    ckpt = run / "checkpoints" / "best.ckpt"
    result = run_cli([f"ckpt={ckpt}", "progress=false"], tmp_path, command="cellseg.evaluate")
    assert result.returncode == 0, result.stderr[-2000:]
    (eval_json,) = (run / "eval" / "best").glob("val_*/eval.json")
    scores = json.loads(eval_json.read_text())["scores"]
    assert 0.0 < scores["val/v_rand"] <= 1.0 and json.loads(eval_json.read_text())["images"] == 5
    volume = SHARED_DATA / "isbi2012" / "test-volume.tif"
    args = [f"ckpt={ckpt}", f"input={volume}", f"output={tmp_path / 'submission'}", "progress=false"]
    assert run_cli(args, tmp_path, command="cellseg.predict").returncode == 0
    assert (tmp_path / "submission" / "probabilities" / "test-volume.tif").is_file()
