"""target=distance and target=flows: the maps they teach, their losses, and instances decoded from them
(through tiles, test-time augmentation and thresholds tuned on validation)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from cellseg.build import build_datamodule
from cellseg.data.pipeline.targets import DistanceTarget, FlowTarget, normalised_distance
from cellseg.errors import ConfigError
from cellseg.inference.checkpoint import load_model
from cellseg.inference.predictor import Predictor
from cellseg.inference.tiling import TileSettings
from cellseg.inference.tta import with_tta
from cellseg.instances.flows import flows_from_instances
from cellseg.instances.tuning import store_decoding, tune_decoding
from cellseg.losses import CompositeLoss, MSELoss, SmoothL1Loss
from cellseg.metrics.instances import instance_scores
from tests.conftest import FAST, compose_config
from tests.inference_helpers import PassThrough, pass_through_model, write_checkpoint


def touching_cells(size: int = 64) -> np.ndarray:
    """A 2 x 2 block of touching squares, a disk touching it and an L-shaped cell: 6 cells."""
    instances = np.zeros((size, size), np.int32)
    instances[4:20, 4:20], instances[4:20, 20:36] = 1, 2
    instances[20:36, 4:20], instances[20:36, 20:36] = 3, 4
    yy, xx = np.mgrid[:size, :size]
    instances[((yy - 28) ** 2 + (xx - 46) ** 2 <= 100) & (instances == 0)] = 5
    instances[42:60, 6:12] = 6
    instances[54:60, 6:30] = 6
    return instances


def perfect_outputs(target, instances: np.ndarray, cell_probability: float = 1.0) -> np.ndarray:
    """What a perfect network would output for ``instances``: class probabilities then the true maps."""
    cells = (instances > 0) * cell_probability
    return np.concatenate([np.stack([1.0 - cells, cells]), target.regression(instances)]).astype(np.float32)


def test_distance_is_normalised_per_cell_and_measured_against_neighbours():
    instances = np.zeros((11, 18), np.int32)
    instances[2:9, 2:9] = 1  # 7 x 7: the centre is 4 px from the outside
    instances[2:9, 9:16] = 2  # touches cell 1 along a full side
    distance = normalised_distance(instances)
    assert distance[5, 5] == pytest.approx(1.0) and distance[5, 12] == pytest.approx(1.0)
    assert distance[2, 2] == pytest.approx(0.25)  # a corner pixel is 1 px from the outside
    assert distance[5, 8] == pytest.approx(0.25) and distance[5, 9] == pytest.approx(0.25)  # shared border
    assert (distance[instances == 0] == 0).all()
    assert DistanceTarget().regression(instances).shape == (1, 11, 18)


@pytest.mark.parametrize("target", [DistanceTarget(), FlowTarget()], ids=["distance", "flows"])
def test_decoding_the_true_maps_recovers_touching_cells(target):
    instances = touching_cells()
    probabilities, regression = target.outputs.split_array(perfect_outputs(target, instances))
    decoded = target.decode(probabilities, regression)
    scores = instance_scores([instances], [decoded])
    assert scores["ap50"] == 1.0 and scores["ap75"] == 1.0
    assert decoded.max() == 6 and decoded.dtype == np.int32


def test_decoding_settings_are_checked_and_named():
    with pytest.raises(ConfigError, match=r"Unknown decoding setting.*flow_threshold.*DistanceTarget"):
        DistanceTarget(decoding={"flow_threshold": 0.4})
    with pytest.raises(ConfigError, match=r"target.decoding.prob_threshold must be a number in \[0.0, 1.0\]"):
        FlowTarget(decoding={"prob_threshold": 1.5})
    assert FlowTarget(decoding={"flow_threshold": None}).decoding["flow_threshold"] is None


def test_regression_terms_score_their_region_and_skip_unannotated_pixels():
    mask = torch.tensor([[[0, 1], [1, -100]]])
    true = torch.zeros(1, 1, 2, 2)
    predicted = torch.tensor([[[[2.0, 1.0], [3.0, 50.0]]]], requires_grad=True)
    batch = {"mask": mask, "regression": true, "regression_output": predicted}
    logits = torch.zeros(1, 2, 2, 2)
    assert MSELoss(2)(logits, batch).item() == pytest.approx((4 + 1 + 9) / 3)  # the ignored pixel is out
    assert MSELoss(2, region="cells")(logits, batch).item() == pytest.approx((1 + 9) / 2)
    smooth = SmoothL1Loss(2, beta=1.0)(logits, batch)
    assert smooth.item() == pytest.approx((1.5 + 0.5 + 2.5) / 3)
    smooth.backward()
    assert predicted.grad[0, 0, 1, 1] == 0
    with pytest.raises(ValueError, match="target=distance or target=flows"):
        MSELoss(2)(logits, {"mask": mask})
    composite = CompositeLoss(2, {"ce": {}, "mse": {}}, mse_weight=0.0)
    assert composite(logits, batch).item() == pytest.approx(np.log(2), abs=1e-6)


def test_targets_pick_their_loss_and_a_loss_must_fit_the_target():
    assert "mse" in compose_config(["target=flows"]).loss.terms
    assert "mse" in compose_config(["target=distance"]).loss.terms
    assert "mse" not in compose_config(["target=flows", "loss=dice_ce"]).loss.terms  # the command line wins
    with pytest.raises(ConfigError, match=r"flow_y, flow_x .* no regression term .* loss=flows"):
        build_datamodule(compose_config([*FAST, "target=flows", "loss=dice_ce"]))
    with pytest.raises(ConfigError, match=r"regression term .* BinaryTarget outputs classes only"):
        build_datamodule(compose_config([*FAST, "loss=distance"]))


def test_augmented_samples_carry_the_flows_of_their_own_instances():
    cfg = compose_config([*FAST, "target=flows", "data.size=96", "data.crop_size=64", "augmentation=basic"])
    datamodule = build_datamodule(cfg)
    datamodule.setup("fit")
    dataset = datamodule.dataset("train")
    for index in range(4):
        item = dataset[index]
        instances = item["instances"].numpy()
        assert item["regression"].shape == (2, 64, 64)
        np.testing.assert_allclose(item["regression"].numpy(), flows_from_instances(instances), atol=1e-6)
        # and the flows of every augmented cell point into it, towards its centre
        yy, xx = np.nonzero(instances > 0)
        step_y = np.clip(np.rint(yy + 2 * item["regression"][0].numpy()[yy, xx]), 0, 63).astype(int)
        step_x = np.clip(np.rint(xx + 2 * item["regression"][1].numpy()[yy, xx]), 0, 63).astype(int)
        assert (instances[step_y, step_x] == instances[yy, xx]).mean() > 0.95


def symmetric_cells(size: int = 64) -> np.ndarray:
    """Touching odd-sized squares and a disk: each cell has one centre pixel, so their flows turn exactly
    with the image (an even-sized cell's centre is a tie that a flip resolves differently)."""
    instances = np.zeros((size, size), np.int32)
    instances[4:19, 4:19], instances[4:19, 19:34] = 1, 2
    instances[19:34, 4:19], instances[19:34, 19:34] = 3, 4
    yy, xx = np.mgrid[:size, :size]
    instances[((yy - 27) ** 2 + (xx - 46) ** 2 <= 100) & (instances == 0)] = 5
    return instances


def test_test_time_augmentation_maps_flow_vectors_back_as_vectors():
    instances = symmetric_cells()

    def perfect_flow_network(tiles: torch.Tensor) -> torch.Tensor:
        return torch.stack(
            [torch.from_numpy(flows_from_instances(t[0].numpy().astype(np.int32))) for t in tiles]
        )

    tiles = torch.from_numpy(instances)[None, None].float()
    plain = perfect_flow_network(tiles)
    for mode in ("flips", "d4"):
        averaged = with_tta(perfect_flow_network, mode, vectors=[(0, 1)])(tiles)
        torch.testing.assert_close(averaged, plain, atol=1e-5, rtol=0)
    # without the vector correction the flips would cancel the x and y components out
    assert not torch.allclose(with_tta(perfect_flow_network, "flips")(tiles), plain, atol=1e-2)


@pytest.mark.parametrize("target", [DistanceTarget(), FlowTarget()], ids=["distance", "flows"])
def test_a_cell_across_tile_borders_stays_one_cell(tmp_path, target):
    size = 96
    yy, xx = np.mgrid[:size, :size]
    instances = np.zeros((size, size), np.int32)
    instances[(yy - 48) ** 2 + (xx - 48) ** 2 <= 20**2] = 1  # across the borders of four 48-px tiles
    instances[4:20, 4:30], instances[4:20, 30:44] = 2, 3
    outputs = perfect_outputs(target, instances)
    logits = np.log(np.clip(outputs[:2], 1e-4, 1.0))  # softmax(log p) = p
    model_input = np.concatenate([logits, outputs[2:]]).astype(np.float32)
    model = pass_through_model(target, tmp_path)
    predictor = Predictor(model, TileSettings(size=48, overlap=0.25), device="cpu")
    assert predictor.tiles_for(size, size) > 4
    predicted = predictor.outputs_of_input(model_input)
    decoded = model.target.decode(*predictor.layout.split_array(predicted))
    assert instance_scores([instances], [decoded])["ap75"] == 1.0
    assert len(np.unique(decoded[instances == 1])) == 1


def test_tuned_thresholds_are_stored_in_the_checkpoint_and_used(tmp_path):
    target = DistanceTarget()
    truths = [touching_cells(), np.rot90(touching_cells()).copy()]
    # A shy network: p(cell) = 0.4 everywhere in cells, so the default threshold 0.5 finds nothing.
    outputs = [perfect_outputs(target, t, cell_probability=0.4) for t in truths]
    result = tune_decoding(target, target.outputs, outputs, truths, progress=False)
    assert result.previous_score == 0.0 and result.score == 1.0
    assert result.settings["prob_threshold"] < 0.4
    assert len(result.trials) == 5 * 5 * 3
    ckpt = write_checkpoint(
        tmp_path / "ckpt.ckpt", target=target.describe(), regression_names=target.regression_names
    )
    store_decoding(ckpt, result.settings)
    stored = load_model(ckpt).target
    assert stored.decoding == result.settings
    probabilities, regression = target.outputs.split_array(outputs[0])
    assert instance_scores([truths[0]], [stored.decode(probabilities, regression)])["ap50"] == 1.0
    with pytest.raises(ConfigError, match="no decoding thresholds to tune"):
        tune_decoding(load_model(write_checkpoint(tmp_path / "b.ckpt")).target, None, [], [])


def test_measurements_of_decoded_cells_match_the_true_cells(tmp_path):
    import csv

    import tifffile

    from cellseg.inference.results import OutputOptions, predict_files

    target = DistanceTarget()
    instances = touching_cells()
    outputs = perfect_outputs(target, instances)
    model_input = np.concatenate([np.log(np.clip(outputs[:2], 1e-4, 1.0)), outputs[2:]]).astype(np.float32)
    names = ["logit_background", "logit_cell", "distance"]
    identity = {
        "method": "meanstd",
        "low": 1.0,
        "high": 99.8,
        "clip": False,
        "mean": [0.0] * 3,
        "std": [1.0] * 3,
    }
    ckpt = write_checkpoint(
        tmp_path / "ckpt.ckpt",
        names,
        names,
        target=target.describe(),
        regression_names=("distance",),
        normalization=identity,  # the file holds the model input itself
    )
    model = load_model(ckpt)
    model.net = PassThrough()
    predictor = Predictor(model, TileSettings(size=48), device="cpu")
    tifffile.imwrite(tmp_path / "field.tif", model_input, photometric="minisblack")
    options = OutputOptions.checked(
        ["instances"], "png", None, "foreground", model.class_names, measure=True, pixel_size=0.5
    )
    predict_files(predictor, [tmp_path / "field.tif"], tmp_path / "out", options, progress=False)
    with open(tmp_path / "out" / "measurements" / "field.csv") as handle:
        rows = list(csv.DictReader(handle))
    saved = tifffile.imread(tmp_path / "out" / "instances" / "field.tif")
    assert saved.dtype == np.uint16 and instance_scores([instances], [saved])["ap75"] == 1.0
    areas = np.bincount(saved.ravel())[1:]  # a watershed may give a shared border pixel to the neighbour
    true_areas = np.bincount(instances.ravel())[1:]
    assert [int(r["area_px"]) for r in rows] == areas.tolist()
    assert np.abs(np.sort(areas) - np.sort(true_areas)).max() <= 2
    assert [float(r["area_um2"]) for r in rows] == pytest.approx(areas * 0.25)
    assert all(float(r["max_distance"]) == pytest.approx(1.0, abs=1e-3) for r in rows)
    with open(tmp_path / "out" / "summary.csv") as handle:
        summary = list(csv.DictReader(handle))
    assert summary[0]["image"] == "field" and int(summary[0]["cell_count"]) == 6
    assert float(summary[0]["median_area_px"]) == pytest.approx(np.median(areas))
    from skimage.io import imread

    picture = imread(tmp_path / "out" / "overlays" / "field.png")
    assert picture.shape == (64, 64, 3) and picture.std() > 0
    with pytest.raises(ConfigError, match="pixel_size must be a number > 0"):
        OutputOptions.checked(["mask"], "png", None, "foreground", model.class_names, True, -1.0)


@pytest.fixture(scope="module")
def flows_run(tmp_path_factory) -> Path:
    """Two epochs of a small U-Net on target=flows, with the end-of-training tuning callback."""
    from cellseg.training import train

    run_dir = tmp_path_factory.mktemp("flows") / "run"
    overrides = [
        *(override for override in FAST if not override.startswith("model.")),
        "model=unet_classic",
        "model.init_features=8",
        "target=flows",
        "trainer.max_epochs=2",
        "+callbacks.tune_decoding._target_=cellseg.tuning.TuneDecoding",
    ]
    train(compose_config(overrides, run_dir=run_dir))
    return run_dir


def test_training_tunes_decoding_and_evaluate_and_predict_use_it(flows_run, tmp_path):
    import json

    import tifffile
    from hydra import compose, initialize_config_dir
    from omegaconf import open_dict

    from cellseg.config import config_dir
    from cellseg.data.sources.synthetic_cells import SyntheticCellsParams, generate_image
    from cellseg.evaluate import evaluate
    from cellseg.predict import predict

    summary = json.loads((flows_run / "metrics.json").read_text())
    ckpt = flows_run / "checkpoints" / "best.ckpt"
    tuned = summary["decoding"]["decoding"]
    assert set(tuned) == {"prob_threshold", "flow_threshold", "niter", "min_size"}
    assert load_model(ckpt).target.decoding == tuned
    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        cfg = compose("evaluate", overrides=[f"ckpt={ckpt}", "progress=false", "tune=true", "tile.size=64"])
        image, _ = generate_image(np.random.default_rng(0), SyntheticCellsParams(size=80))
        tifffile.imwrite(tmp_path / "cells.tif", image, photometric="minisblack")
        predict_cfg = compose(
            "predict",
            overrides=[
                f"ckpt={ckpt}",
                f"input={tmp_path / 'cells.tif'}",
                f"output={tmp_path / 'out'}",
                "progress=false",
                "measure=true",
                "decoding.prob_threshold=0.05",
            ],
        )
    with open_dict(cfg):
        cfg.paths.run_dir = str(tmp_path / "eval")
    result = evaluate(cfg)
    assert result["tuning"]["combinations"] == 25 and result["decoding"] == load_model(ckpt).target.decoding
    assert (tmp_path / "eval" / "tuning.csv").read_text().startswith("prob_threshold,flow_threshold,ap50")
    manifest = predict(predict_cfg)
    assert manifest["decoding"]["prob_threshold"] == 0.05  # the command line over the checkpoint
    assert manifest["decoding"]["flow_threshold"] == result["decoding"]["flow_threshold"]
    header = (tmp_path / "out" / "measurements" / "cells.csv").read_text().splitlines()[0]
    assert header.startswith("image,label,area_px,perimeter_px") and "mean_membrane" in header
    assert (tmp_path / "out" / "overlays" / "cells.png").is_file()
    assert (tmp_path / "out" / "summary.csv").read_text().startswith("image,cell_count")


def test_bad_decoding_requests_are_refused_before_any_folder_is_made(tmp_path):
    from tests.conftest import run_cli

    target = FlowTarget()
    ckpt = write_checkpoint(
        tmp_path / "flows.ckpt", target=target.describe(), regression_names=target.regression_names
    )
    binary = write_checkpoint(tmp_path / "binary.ckpt")
    (tmp_path / "in.tif").write_bytes(b"")
    cases = [
        ("cellseg.predict", [f"ckpt={ckpt}", "decoding.peak_threshold=0.3"], "peak_threshold for FlowTarget"),
        (
            "cellseg.predict",
            [f"ckpt={ckpt}", "measure=true", "pixel_size=-1"],
            "pixel_size must be a number > 0",
        ),
        ("cellseg.evaluate", [f"ckpt={binary}", "tune=true"], "BinaryTarget has no decoding thresholds"),
    ]
    for command, args, message in cases:
        extra = (
            [f"input={tmp_path / 'in.tif'}", f"output={tmp_path / 'out'}"]
            if command.endswith("predict")
            else []
        )
        result = run_cli([*args, *extra], tmp_path, timeout=120, command=command)
        assert result.returncode != 0 and message in result.stderr, result.stderr[-2000:]
        assert not (tmp_path / "out").exists() and not (tmp_path / "eval").exists()


def test_decoding_many_settings_at_once_equals_decoding_each():
    target = FlowTarget()
    instances = touching_cells()
    outputs = perfect_outputs(target, instances)
    outputs[2:] += np.random.default_rng(3).normal(0, 0.4, outputs[2:].shape).astype(np.float32)
    probabilities, regression = target.outputs.split_array(outputs)
    choices = [{"prob_threshold": p, "flow_threshold": f} for p in (0.4, 0.6) for f in (0.2, 0.8, None)]
    together = target.decode_each(probabilities, regression, choices)
    for choice, decoded in zip(choices, together, strict=True):
        np.testing.assert_array_equal(decoded, target.decode(probabilities, regression, choice))
    assert len({int(d.max()) for d in together}) > 1  # the thresholds matter on these noisy flows
