"""python -m cellseg.predict: files in, masks / probabilities / instances out, from a checkpoint alone."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import tifffile
from hydra import compose, initialize_config_dir
from PIL import Image

from cellseg.config import config_dir
from cellseg.data.io import read_planes
from cellseg.data.sources.synthetic_cells import SyntheticCellsParams, generate_cells
from cellseg.errors import CellsegError, ConfigError, DataError, OutputDirError
from cellseg.inference.checkpoint import CheckpointError
from cellseg.predict import predict
from tests.conftest import run_cli
from tests.inference_helpers import write_checkpoint


def _config(ckpt: Path, inputs: str, output: Path, *extra: str):
    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        return compose(
            "predict",
            overrides=[f"ckpt={ckpt}", f"input={inputs}", f"output={output}", "progress=false", *extra],
        )


def _cli(*args: str, cwd: Path):
    return run_cli(args, cwd, timeout=300, command="cellseg.predict")


@pytest.fixture
def lone_checkpoint(trained_run, tmp_path) -> Path:
    """The trained checkpoint copied alone into an empty folder: no run directory, no config files."""
    path = tmp_path / "alone" / "model.ckpt"
    path.parent.mkdir()
    shutil.copy(trained_run / "checkpoints" / "best.ckpt", path)
    return path


def _fields(count: int, size: int = 96) -> list[np.ndarray]:
    images, _ = generate_cells(count, 3, "test", SyntheticCellsParams(size=size))
    return list(images)


def test_a_checkpoint_alone_predicts_masks_probabilities_and_instances(lone_checkpoint, tmp_path):
    field = _fields(1, 150)[0]  # 5 channels, uint16, an odd size
    tifffile.imwrite(tmp_path / "field.tif", field)
    manifest = predict(
        _config(
            lone_checkpoint,
            str(tmp_path / "field.tif"),
            tmp_path / "out",
            "save=[mask,probability,instances]",
            "tile.size=64",
        )
    )
    out = tmp_path / "out"
    mask = np.asarray(Image.open(out / "masks" / "field.png"))
    probability = tifffile.imread(out / "probabilities" / "field.tif")
    instances = tifffile.imread(out / "instances" / "field.tif")
    assert mask.shape == probability.shape == instances.shape == (150, 150)
    assert set(np.unique(mask)) <= {0, 255} and probability.dtype == np.float32
    assert probability.min() >= 0.0 and probability.max() <= 1.0
    np.testing.assert_array_equal(mask == 255, probability > 0.5)  # argmax of two classes
    assert instances.dtype == np.uint16 and instances.max() >= 1
    assert set(np.unique(instances[mask == 0])) == {0}
    # The model has learnt the synthetic cells: the prediction overlaps the true cells.
    truth = generate_cells(1, 3, "test", SyntheticCellsParams(size=150))[1][0] > 0
    dice = 2 * (truth & (mask > 0)).sum() / (truth.sum() + (mask > 0).sum())
    assert dice > 0.8
    entry = manifest["files"][0]
    assert entry["images"] == 1 and set(entry["outputs"]) == {"mask", "probability", "instances"}
    assert json.loads((out / "predict.json").read_text())["class_names"] == ["background", "cell"]


def test_a_stack_in_gives_one_multipage_stack_out(lone_checkpoint, tmp_path):
    fields = _fields(3, 64)
    tifffile.imwrite(tmp_path / "stack.tif", np.concatenate(fields))  # 3 images x 5 channels = 15 pages
    predict(
        _config(
            lone_checkpoint, str(tmp_path / "stack.tif"), tmp_path / "out", "mask.format=tif", "tile.size=64"
        )
    )
    masks = tifffile.imread(tmp_path / "out" / "masks" / "stack.tif")
    probabilities = tifffile.imread(tmp_path / "out" / "probabilities" / "stack.tif")
    assert masks.shape == probabilities.shape == (3, 64, 64)
    # Each page is that image's own prediction.
    tifffile.imwrite(tmp_path / "one.tif", fields[1])
    predict(_config(lone_checkpoint, str(tmp_path / "one.tif"), tmp_path / "single", "tile.size=64"))
    single = tifffile.imread(tmp_path / "single" / "probabilities" / "one.tif")
    np.testing.assert_allclose(probabilities[1], single, atol=1e-6)


def test_a_folder_and_a_glob_predict_every_image_and_skip_other_files(trained_run, tmp_path):
    ckpt = trained_run / "checkpoints" / "best.ckpt"
    (tmp_path / "in").mkdir()
    for i, field in enumerate(_fields(2, 64)):
        tifffile.imwrite(tmp_path / "in" / f"f{i}.tif", field)
    (tmp_path / "in" / "notes.txt").write_text("not an image")
    manifest = predict(_config(ckpt, str(tmp_path / "in"), tmp_path / "a", "tile.size=64"))
    assert [Path(e["input"]).name for e in manifest["files"]] == ["f0.tif", "f1.tif"]
    manifest = predict(_config(ckpt, str(tmp_path / "in" / "f1*.tif"), tmp_path / "b", "tile.size=64"))
    assert [Path(e["input"]).name for e in manifest["files"]] == ["f1.tif"]


def test_one_channel_checkpoint_reads_png_jpg_and_writes_the_isbi_submission_stack(tmp_path):
    ckpt = write_checkpoint(tmp_path / "em.ckpt")
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (40, 50), dtype=np.uint8)).save(tmp_path / "gray.png")
    gray = rng.integers(0, 255, (40, 50), dtype=np.uint8)
    Image.fromarray(np.stack([gray] * 3, axis=-1)).save(tmp_path / "rgb_gray.png")  # gray saved as RGB
    Image.fromarray(rng.integers(0, 255, (33, 35), dtype=np.uint8)).save(tmp_path / "photo.jpg")
    tifffile.imwrite(tmp_path / "volume.tif", rng.integers(0, 255, (30, 48, 48), dtype=np.uint8))
    manifest = predict(_config(ckpt, str(tmp_path / "*.*"), tmp_path / "out", "mask.values=[0,1]"))
    assert {Path(e["input"]).name: e["images"] for e in manifest["files"]} == {
        "gray.png": 1,
        "photo.jpg": 1,
        "rgb_gray.png": 1,
        "volume.tif": 30,
    }
    submission = tifffile.imread(tmp_path / "out" / "probabilities" / "volume.tif")
    assert submission.shape == (30, 48, 48) and submission.dtype == np.float32
    assert read_planes(tmp_path / "out" / "masks" / "volume.tif").shape == (30, 48, 48)
    assert set(np.unique(np.asarray(Image.open(tmp_path / "out" / "masks" / "gray.png")))) <= {0, 1}


def test_colour_image_for_a_gray_model_is_refused(tmp_path):
    ckpt = write_checkpoint(tmp_path / "em.ckpt")
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (40, 50, 3), dtype=np.uint8)).save(
        tmp_path / "rgb.png"
    )
    with pytest.raises(DataError, match=r"rgb.png: is a colour image"):
        predict(_config(ckpt, str(tmp_path / "rgb.png"), tmp_path / "out"))


def test_channel_count_that_does_not_fit_the_checkpoint_fails_before_any_output(trained_run, tmp_path):
    tifffile.imwrite(tmp_path / "four.tif", np.zeros((4, 32, 32), np.uint16), photometric="minisblack")
    tifffile.imwrite(tmp_path / "ok.tif", _fields(1, 32)[0])
    with pytest.raises(
        DataError, match=r"four.tif: has 4 plane\(s\) but the checkpoint expects images of 5 channel"
    ):
        predict(
            _config(
                trained_run / "checkpoints" / "best.ckpt",
                f"[{tmp_path / 'ok.tif'},{tmp_path / 'four.tif'}]",
                tmp_path / "out",
            )
        )
    assert not (tmp_path / "out" / "masks").exists()  # checked before the first image was predicted


def test_bad_inputs_fail_with_clear_messages(tmp_path):
    ckpt = write_checkpoint(tmp_path / "em.ckpt")
    (tmp_path / "broken.tif").write_bytes(b"this is not a TIFF")
    with pytest.raises(DataError, match=r"broken\.tif: cannot be read as an image"):
        predict(_config(ckpt, str(tmp_path / "broken.tif"), tmp_path / "out"))
    with pytest.raises(DataError, match="does not exist"):
        predict(_config(ckpt, str(tmp_path / "missing.tif"), tmp_path / "out"))
    with pytest.raises(DataError, match="matches no image files"):
        predict(_config(ckpt, str(tmp_path / "*.png"), tmp_path / "out"))
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(tmp_path / "a.png")
    with pytest.raises(CellsegError, match=r"mask\.format is 'bmp'"):
        predict(_config(ckpt, str(tmp_path / "a.png"), tmp_path / "fmt", "mask.format=bmp"))
    assert not (tmp_path / "fmt" / "masks").exists()  # refused before the first prediction
    with pytest.raises(CellsegError, match=r"mask\.values needs one value per class"):
        Image.fromarray(np.zeros((8, 8), np.uint8)).save(tmp_path / "a.png")
        predict(_config(ckpt, str(tmp_path / "a.png"), tmp_path / "out", "mask.values=[0,1,2]"))


def test_checkpoints_from_another_tool_or_truncated_are_refused(tmp_path):
    import torch

    good = write_checkpoint(tmp_path / "em.ckpt")
    truncated = tmp_path / "truncated.ckpt"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    other = tmp_path / "other.ckpt"
    torch.save({"state_dict": {"w": torch.zeros(1)}, "hyper_parameters": {"lr": 0.1}}, other)
    plain = tmp_path / "weights.pt"
    torch.save({"w": torch.zeros(1)}, plain)
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(tmp_path / "a.png")
    for path, message in (
        (truncated, "truncated, corrupt or not a checkpoint"),
        (other, "not one written by cellseg"),
        (plain, "not a Lightning checkpoint"),
    ):
        with pytest.raises(CheckpointError, match=message):
            predict(_config(path, str(tmp_path / "a.png"), tmp_path / "out"))


def test_output_folder_with_files_is_refused_unless_overwrite_and_nothing_is_lost(tmp_path):
    ckpt = write_checkpoint(tmp_path / "em.ckpt")
    Image.fromarray(np.zeros((16, 16), np.uint8)).save(tmp_path / "a.png")
    out = tmp_path / "out"
    (out / "masks").mkdir(parents=True)
    (out / "masks" / "a.png").write_bytes(b"earlier result")
    (out / "keep.txt").write_text("mine")
    with pytest.raises(OutputDirError, match="already holds 2 file"):
        predict(_config(ckpt, str(tmp_path / "a.png"), out))
    assert (out / "masks" / "a.png").read_bytes() == b"earlier result"
    predict(_config(ckpt, str(tmp_path / "a.png"), out, "overwrite=true"))
    assert np.asarray(Image.open(out / "masks" / "a.png")).shape == (16, 16)
    assert (out / "keep.txt").read_text() == "mine"


def test_cli_refuses_before_hydra_writes_and_exits_2(tmp_path):
    ckpt = write_checkpoint(tmp_path / "em.ckpt")
    Image.fromarray(np.zeros((16, 16), np.uint8)).save(tmp_path / "a.png")
    out = tmp_path / "out"
    out.mkdir()
    (out / "earlier.tif").write_bytes(b"x")
    result = _cli(f"ckpt={ckpt}", f"input={tmp_path / 'a.png'}", f"output={out}", cwd=tmp_path)
    assert result.returncode == 2 and "overwrite=true" in result.stderr
    assert sorted(p.name for p in out.iterdir()) == ["earlier.tif"]  # no log, no .hydra added
    result = _cli(
        f"ckpt={tmp_path / 'nope.ckpt'}",
        f"input={tmp_path / 'a.png'}",
        f"output={tmp_path / 'new'}",
        cwd=tmp_path,
    )
    assert result.returncode == 2 and "nope.ckpt' does not exist" in result.stderr
    assert not (tmp_path / "new").exists()
    result = _cli(
        f"ckpt={ckpt}",
        f"input={tmp_path / 'a.png'}",
        f"output={tmp_path / 'new'}",
        "tile.sise=64",
        cwd=tmp_path,
    )
    assert result.returncode == 2 and "Did you mean 'size'" in result.stderr


def test_files_without_the_training_only_target_stain_predict_with_channel_names(tmp_path):
    """A label-free model (trained with DAPI as target only) predicts brightfield-only files."""
    bf = ["bf_m1", "bf_0", "bf_p1"]
    ckpt = write_checkpoint(tmp_path / "zstack.ckpt", channel_names=["dapi", *bf], specs=bf)
    stack = np.random.default_rng(0).integers(0, 4000, (3, 40, 40), dtype=np.uint16)
    tifffile.imwrite(tmp_path / "bf_only.tif", stack, photometric="minisblack")
    with pytest.raises(DataError, match=r"has 3 plane\(s\) but the checkpoint expects images of 4"):
        predict(_config(ckpt, str(tmp_path / "bf_only.tif"), tmp_path / "a"))
    manifest = predict(
        _config(ckpt, str(tmp_path / "bf_only.tif"), tmp_path / "b", f"channel_names=[{','.join(bf)}]")
    )
    assert manifest["files"][0]["images"] == 1 and manifest["channel_names"] == bf
    with pytest.raises(ConfigError, match="Unknown channel 'bf_p1'"):
        predict(
            _config(ckpt, str(tmp_path / "bf_only.tif"), tmp_path / "c", "channel_names=[bf_m1,bf_0,other]")
        )
