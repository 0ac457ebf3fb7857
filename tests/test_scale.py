"""data.scale: images and labels resized for training (Cellpose's diameter normalisation), and new images
resized by the checkpoint's factor in prediction, with results in the images' own pixels."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile
from PIL import Image

from cellseg.build import build_datamodule
from cellseg.data.pipeline.scale import check_scale, resize_image, resize_labels
from cellseg.data.pipeline.targets import FlowTarget
from cellseg.errors import ConfigError
from cellseg.inference.checkpoint import load_model
from cellseg.inference.predictor import Predictor
from cellseg.inference.tiling import TileSettings
from cellseg.metrics.instances import instance_scores
from tests.conftest import FAST, TINY, compose_config
from tests.inference_helpers import pass_through_model
from tests.test_instance_targets import perfect_outputs, touching_cells


def test_labels_resize_by_nearest_neighbour_and_keep_their_ids():
    labels = np.zeros((8, 12), np.int32)
    labels[:4, :6], labels[4:, 6:], labels[7, 0] = 7, 300, -1
    half = resize_labels(labels, 4, 6)
    assert half.dtype == np.int32 and half.shape == (4, 6)
    np.testing.assert_array_equal(half[:2, :3], 7)
    np.testing.assert_array_equal(half[2:, 3:], 300)
    assert set(np.unique(half)) <= {0, 7, 300, -1}  # no blended ids
    double = resize_labels(labels, 16, 24)
    np.testing.assert_array_equal(double[::2, ::2], labels)


def test_images_keep_their_dtype_and_their_intensities():
    image = np.zeros((2, 40, 60), np.uint16)
    image[0] = 1000
    image[1, :, 30:] = 60000
    small = resize_image(image, 0.5)
    assert small.dtype == np.uint16 and small.shape == (2, 20, 30)
    np.testing.assert_array_equal(small[0], 1000)
    assert small[1, :, :14].max() == 0 and small[1, :, 16:].min() == 60000
    # A one-pixel line is averaged into the smaller image, not skipped (antialiasing).
    line = np.zeros((1, 40, 40), np.float32)
    line[0, :, 21] = 1.0
    assert resize_image(line, 0.25).mean() == pytest.approx(line.mean(), rel=0.05)


@pytest.mark.parametrize("value", [0, -0.5, 100, float("nan"), "half", True])
def test_a_factor_out_of_range_is_refused_naming_the_key(value):
    with pytest.raises(ConfigError, match=r"data\.scale"):
        check_scale(value)


def test_a_data_module_resizes_every_split_and_records_the_factor():
    datamodule = build_datamodule(compose_config([*FAST, "data.scale=0.5"]))
    for split in ("train", "val", "test"):
        dataset = datamodule.dataset(split)
        assert dataset.samples.images[0].shape[-2:] == (32, 32)  # data.size=64
        assert dataset.instances[0].shape == (32, 32)
    assert datamodule.describe()["scale"] == 0.5
    with pytest.raises(ConfigError, match=r"data\.scale is 0"):
        build_datamodule(compose_config([*FAST, "data.scale=0"]))


def test_prediction_resizes_by_the_checkpoints_factor_and_answers_in_the_images_pixels(tmp_path):
    target = FlowTarget()
    instances = np.kron(touching_cells(), np.ones((2, 2), np.int32))  # cells of 32 px and more
    outputs = perfect_outputs(target, instances)
    model_input = np.concatenate([np.log(np.clip(outputs[:2], 1e-4, 1.0)), outputs[2:]]).astype(np.float32)
    model = pass_through_model(target, tmp_path, scale=0.5)
    tiles = TileSettings(size=32, overlap=0.25)
    predictor = Predictor(model, tiles, device="cpu")
    assert predictor.scale == 0.5 and not predictor.streams
    assert predictor.tiles_for(128, 128) == Predictor(model, tiles, device="cpu", scale=1.0).tiles_for(64, 64)
    predicted = predictor.outputs_of_input(model_input)
    assert predicted.shape == (4, 128, 128)
    decoded = model.target.decode(*predictor.layout.split_array(predicted))
    assert instance_scores([instances], [decoded])["ap50"] == 1.0
    with pytest.raises(ValueError, match="cannot stream"):
        predictor.blocks(None)  # type: ignore[arg-type]


def test_a_run_trained_at_half_scale_predicts_files_at_their_own_size(tmp_path):
    from cellseg.data.sources.synthetic_cells import SyntheticCellsParams, generate_cells
    from cellseg.predict import predict
    from cellseg.training import train
    from tests.test_predict import _config

    overrides = [*TINY, "data.scale=0.5", "data.crop_size=32"]
    train(compose_config(overrides, run_dir=tmp_path / "run"))
    ckpt = tmp_path / "run" / "checkpoints" / "last.ckpt"
    assert load_model(ckpt).scale == 0.5
    images, _ = generate_cells(1, 3, "test", SyntheticCellsParams(size=96))
    tifffile.imwrite(tmp_path / "field.tif", images[0])
    predict(_config(ckpt, str(tmp_path / "field.tif"), tmp_path / "out", "save=[mask,instances]"))
    assert np.asarray(Image.open(tmp_path / "out" / "masks" / "field.png")).shape == (96, 96)
    assert tifffile.imread(tmp_path / "out" / "instances" / "field.tif").shape == (96, 96)


def test_an_export_tells_its_consumer_the_factor(tmp_path):
    from cellseg.exporters.bioimageio import _notes
    from cellseg.exporters.export import build_metadata
    from cellseg.exporters.settings import ExportSettings
    from tests.inference_helpers import write_checkpoint

    model = load_model(write_checkpoint(tmp_path / "ckpt.ckpt", scale=0.25))
    settings = ExportSettings(
        tmp_path / "ckpt.ckpt", "torchscript", tmp_path / "m.pt", (64, 64), True, False, 1e-4, None
    )
    assert build_metadata(model, settings, dynamic=True)["scale"] == 0.25
    assert any("resized by 0.25" in note for note in _notes(model, ["em"], []))
    plain = load_model(write_checkpoint(tmp_path / "plain.ckpt"))
    assert plain.scale == 1.0  # checkpoints from before data.scale
    assert not any("resized" in note for note in _notes(plain, ["em"], []))


def test_instances_of_a_scaled_checkpoint_are_decoded_where_its_sizes_count():
    from cellseg.data.pipeline.targets import DistanceTarget
    from cellseg.inference.decode import decoded_at_scale

    target = DistanceTarget()  # min_size 15
    instances = np.zeros((96, 96), np.int32)
    instances[8:48, 8:48] = 1  # 400 px at scale 0.5
    instances[70:76, 70:76] = 2  # 36 px here, 9 px at scale 0.5: below min_size where it was tuned
    probabilities, maps = target.outputs.split_array(perfect_outputs(target, instances))
    assert len(np.unique(target.decode(probabilities, maps))) == 3  # both kept at the image's size
    decoded = decoded_at_scale(target.decode, 0.5)(probabilities, maps)
    assert decoded.shape == (96, 96)
    assert set(np.unique(decoded)) == {0, 1} and instance_scores([instances == 1], [decoded])["ap75"] == 1.0
    assert decoded_at_scale(target.decode, 1.0) == target.decode
