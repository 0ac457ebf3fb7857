"""postprocess=crf: the dense CRF on class probabilities, its settings and package checks, and its wiring
into predict and evaluate (once per whole image, after tiles and TTA, regression maps untouched)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
from hydra import compose, initialize_config_dir
from omegaconf import open_dict
from PIL import Image

from cellseg.config import check_command_line, config_dir
from cellseg.data.pipeline.targets import DistanceTarget
from cellseg.errors import ConfigError
from cellseg.inference import predictor as predictor_module
from cellseg.inference.predictor import Predictor
from cellseg.inference.tiling import TileSettings
from cellseg.metrics.instances import instance_scores
from cellseg.postprocess import (
    CrfSettings,
    bilateral_features,
    crf_reference,
    dense_crf,
    postprocess_request,
    postprocess_settings,
)
from tests.fixtures import write_isbi
from tests.inference_helpers import pass_through_model, write_checkpoint
from tests.test_instance_targets import perfect_outputs, touching_cells


def _step_edge(height: int = 48, width: int = 96, edge: int = 48) -> tuple[np.ndarray, np.ndarray]:
    """A noisy dark | bright step image (1, H, W) and its truth (cells right of ``edge``)."""
    rng = np.random.default_rng(0)
    image = np.where(np.arange(width) < edge, 40.0, 200.0)[None, None, :].repeat(height, axis=1)
    image = image + rng.normal(0.0, 5.0, image.shape)
    truth = np.broadcast_to(np.arange(width) >= edge, (height, width))
    return image.astype(np.float32), truth


def test_crf_moves_a_blurred_shifted_boundary_onto_the_image_edge():
    pytest.importorskip("pydensecrf")
    image, truth = _step_edge()
    # A network's blurred answer: a soft ramp whose 0.5 crossing is 8 px left of the true edge.
    ramp = 1.0 / (1.0 + np.exp(-(np.arange(truth.shape[1]) - 40.0) / 6.0))
    cell = np.broadcast_to(ramp, truth.shape).astype(np.float32)
    refined = dense_crf(np.stack([1.0 - cell, cell]), crf_reference(image))
    band = slice(32, 64)  # the 32 columns around the edge
    thresholded = ((cell > 0.5) == truth)[:, band].mean()
    crf = ((refined.argmax(axis=0) == 1) == truth)[:, band].mean()
    assert thresholded == pytest.approx(25 / 32)  # columns 41-47 are on the wrong side
    assert crf > 0.97 and crf > thresholded
    assert refined.shape == (2, *truth.shape) and refined.dtype == np.float32
    assert np.allclose(refined.sum(axis=0), 1.0, atol=1e-5)


def test_n_channel_bilateral_is_pydensecrfs_rgb_kernel_for_three_channels():
    densecrf = pytest.importorskip("pydensecrf.densecrf")
    rng = np.random.default_rng(1)
    height, width = 24, 40
    rgb = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
    cell = rng.random((height, width)).astype(np.float32)
    probabilities = np.stack([1.0 - cell, cell])
    ours = dense_crf(probabilities, rgb.transpose(2, 0, 1).astype(np.float32))
    # Seed 002's calls, verbatim.
    crf = densecrf.DenseCRF2D(width, height, 2)
    crf.setUnaryEnergy(np.ascontiguousarray(-np.log(np.clip(probabilities, 1e-5, 1.0)).reshape(2, -1)))
    crf.addPairwiseGaussian(sxy=20, compat=3)
    crf.addPairwiseBilateral(sxy=30, srgb=20, rgbim=rgb, compat=10)
    seed = np.asarray(crf.inference(5)).reshape(2, height, width)
    np.testing.assert_allclose(ours, seed, atol=1e-6)


def test_several_classes_and_channels():
    pytest.importorskip("pydensecrf")
    rng = np.random.default_rng(2)
    labels = np.repeat(np.arange(3), 16)[None, :].repeat(20, axis=0)  # three vertical bands
    image = np.stack([labels * 80.0, 255.0 - labels * 60.0, rng.normal(100.0, 3.0, labels.shape)])
    noisy = np.eye(3)[labels].transpose(2, 0, 1) * 0.3 + rng.random((3, *labels.shape)) * 0.7
    probabilities = (noisy / noisy.sum(axis=0)).astype(np.float32)
    refined = dense_crf(probabilities, crf_reference(image))
    assert refined.shape == probabilities.shape
    assert (probabilities.argmax(axis=0) == labels).mean() < 0.8
    assert (refined.argmax(axis=0) == labels).mean() > 0.99
    assert bilateral_features(crf_reference(image), 30.0, 20.0).shape == (5, labels.size)


def test_reference_stretches_each_channel_to_0_255_whatever_the_normalisation():
    rng = np.random.default_rng(3)
    zscored = rng.normal(0.0, 1.0, (2, 32, 32)).astype(np.float32)
    zscored[1] *= 50.0
    reference = crf_reference(zscored)
    for channel in reference:
        assert channel.min() == 0.0 and channel.max() == 255.0
        assert np.percentile(channel, 50) == pytest.approx(127.5, abs=10)
    np.testing.assert_allclose(reference[1], crf_reference(zscored[1:] / 50.0)[0], atol=1e-3)
    assert not crf_reference(np.ones((1, 8, 8), np.float32)).any()  # a constant channel carries nothing


@pytest.mark.parametrize(
    "crf,message",
    [
        ({"iterations": 0}, "crf.iterations is 0; expected a whole number >= 1"),
        ({"iterations": 2.5}, "crf.iterations is 2.5"),
        ({"gaussian_sxy": 0}, "crf.gaussian_sxy is 0; expected a number > 0"),
        ({"bilateral_srgb": -1.0}, "crf.bilateral_srgb is -1.0"),
        ({"bilateral_compat": -2}, "crf.bilateral_compat is -2; expected a number >= 0"),
        ({"gaussian_compat": "high"}, "crf.gaussian_compat is 'high'"),
        ({"sxy": 3}, "crf has no key sxy; its keys are iterations, gaussian_sxy"),
    ],
)
def test_bad_crf_settings_name_the_key(crf, message):
    with pytest.raises(ConfigError, match=message.replace(".", r"\.").replace("(", r"\(")):
        postprocess_settings("none", crf)


def test_postprocess_values_and_the_missing_package(monkeypatch):
    with pytest.raises(ConfigError, match="postprocess is 'crff'; expected one of none, crf"):
        postprocess_settings("crff", {})
    monkeypatch.setitem(sys.modules, "pydensecrf", None)  # as if the extra were not installed
    monkeypatch.setitem(sys.modules, "pydensecrf.densecrf", None)
    assert postprocess_settings("none", {}) is None  # the default needs nothing
    with pytest.raises(ConfigError, match=r"postprocess=crf needs .*pydensecrf2.*'crf' extra") as error:
        postprocess_settings("crf", {})
    assert 'pip install "cellseg[crf]"' in str(error.value)
    with pytest.raises(ConfigError, match=r"cellseg\[crf\]"):
        dense_crf(np.full((2, 4, 4), 0.5, np.float32), np.zeros((1, 4, 4), np.float32))


def test_tuning_thresholds_with_the_crf_is_refused():
    pytest.importorskip("pydensecrf")
    job = {"postprocess": "crf", "crf": {"iterations": 3}}
    assert postprocess_request(job) == CrfSettings(iterations=3)
    with pytest.raises(ConfigError, match="tune=true with postprocess=crf"):
        postprocess_request(job, tune=True)
    assert postprocess_request({"postprocess": "none"}, tune=True) is None


@pytest.mark.parametrize(
    "command,extra",
    [("predict", ["input=a.png", "output=out"]), ("evaluate", [])],
)
@pytest.mark.parametrize(
    "override,message",
    [
        ("postprocess=crff", "postprocess is 'crff'; expected one of none, crf"),
        ("crf.iterations=0", "crf.iterations is 0"),
        ("crf.iterations=abc", "crf.iterations=abc: expected a number"),
        ("crf.srgb=5", "Unknown config key 'crf.srgb'"),
    ],
)
def test_the_commands_check_postprocess_before_any_work(command, extra, override, message, tmp_path):
    """The early check of the command line, before Hydra writes anything (the checkpoint is not read:
    it does not even exist)."""
    module = __import__(f"cellseg.{command}", fromlist=["check_before_start"])
    args = [f"ckpt={tmp_path / 'missing.ckpt'}", *extra, override]
    with pytest.raises(ConfigError, match=message.replace("(", r"\(")):
        check_command_line(args, config_name=command, job_checks=(module.check_before_start,))
    assert not list(tmp_path.iterdir())


def _distance_predictor(tmp_path: Path, **kwargs) -> tuple[Predictor, np.ndarray, np.ndarray]:
    """A 'network' that outputs its input (the outputs of a perfect but unsure distance model)."""
    target = DistanceTarget()
    instances = touching_cells(96)
    outputs = perfect_outputs(target, instances)
    rng = np.random.default_rng(4)
    cell = np.clip(outputs[1] * 0.6 + 0.2 + rng.normal(0.0, 0.1, instances.shape), 0.01, 0.99)
    logits = np.log(np.stack([1.0 - cell, cell]))  # softmax(log p) = p
    model_input = np.concatenate([logits, outputs[2:]]).astype(np.float32)
    model = pass_through_model(target, tmp_path)
    return (
        Predictor(model, TileSettings(size=48, overlap=0.25), device="cpu", **kwargs),
        model_input,
        instances,
    )


@pytest.mark.parametrize("tta", ["none", "flips"])
def test_predictor_refines_class_probabilities_once_per_whole_image(tmp_path, monkeypatch, tta):
    pytest.importorskip("pydensecrf")
    plain, model_input, instances = _distance_predictor(tmp_path, tta=tta)
    refined, _, _ = _distance_predictor(tmp_path, tta=tta, postprocess=CrfSettings())
    calls = []
    monkeypatch.setattr(
        predictor_module, "dense_crf", lambda *args: calls.append(args[0].shape) or dense_crf(*args)
    )
    assert refined.tiles_for(96, 96) > 1
    before, after = plain.outputs_of_input(model_input), refined.outputs_of_input(model_input)
    assert calls == [(2, 96, 96)]  # once, on the blended (and TTA-averaged) whole image
    expected = dense_crf(before[:2], crf_reference(model_input), CrfSettings())
    np.testing.assert_allclose(after[:2], expected, atol=1e-6)
    np.testing.assert_array_equal(after[2:], before[2:])  # the distance map is the network's
    decoded = refined.model.target.decode(*refined.layout.split_array(after))
    assert instance_scores([instances], [decoded])["ap50"] == 1.0


def test_predict_and_evaluate_record_the_crf(tmp_path):
    pytest.importorskip("pydensecrf")
    root = write_isbi(tmp_path / "isbi", slices=6, size=32)
    data = {
        "_target_": "cellseg.data.sources.isbi.IsbiDataModule",
        "root": str(root),
        "mask": {"foreground": [255], "background": [0], "connectivity": 1},
        "eval_metrics": ["isbi"],
    }
    ckpt = write_checkpoint(tmp_path / "run" / "checkpoints" / "best.ckpt", data=data)
    Image.fromarray(np.random.default_rng(5).integers(0, 255, (40, 40), dtype=np.uint8)).save(
        tmp_path / "a.png"
    )
    from cellseg.evaluate import evaluate
    from cellseg.predict import predict

    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        settings = ["postprocess=crf", "crf.iterations=2", "progress=false", "tile.size=32"]
        predict_cfg = compose(
            "predict",
            overrides=[
                f"ckpt={ckpt}",
                f"input={tmp_path / 'a.png'}",
                f"output={tmp_path / 'out'}",
                *settings,
            ],
        )
        evaluate_cfg = compose("evaluate", overrides=[f"ckpt={ckpt}", *settings])
    with open_dict(evaluate_cfg):
        evaluate_cfg.paths.run_dir = str(tmp_path / "eval")
    manifest = predict(predict_cfg)
    assert manifest["settings"]["postprocess"] == "crf"
    assert manifest["settings"]["crf"]["iterations"] == 2
    result = evaluate(evaluate_cfg)
    recorded = json.loads((tmp_path / "eval" / "eval.json").read_text())
    assert recorded["postprocess"] == result["postprocess"] == "crf"
    assert recorded["crf"] == {**vars(CrfSettings()), "iterations": 2}
    assert {"val/v_rand", "val/dice"} <= set(recorded["scores"])
