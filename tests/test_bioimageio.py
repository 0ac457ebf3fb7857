"""``python -m cellseg.export format=bioimageio``: a BioImage Model Zoo package that the zoo's own
validation and model test accept, carrying the checkpoint's channels, normalisation and classes; bad
input and failed tests write nothing."""

from __future__ import annotations

import json
import zipfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest
import yaml
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig

from cellseg.config import config_dir
from cellseg.data.pipeline.normalize import Normalization
from cellseg.errors import ConfigError, RunExistsError
from cellseg.exporters import ExportError, check_settings
from cellseg.training import train
from tests.conftest import FAST, compose_config

pytest.importorskip("bioimageio.core", reason="the bioimageio extra is not installed")

from cellseg.exporters.bioimageio import _weights as _export_weights


def export_config(overrides: Sequence[str]) -> DictConfig:
    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        return compose(config_name="export", overrides=["format=bioimageio", *overrides])


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    """A one-epoch small classic U-Net (stride 8) on synthetic images whose channel strategy merges two
    planes and skips others."""
    run_dir = tmp_path_factory.mktemp("bioimageio") / "run"
    channels = "channels.specs=[membrane,{merge:[nucleus,cytoplasm]}]"
    small = ["model=unet_classic", "model.init_features=4", "model.depth=3"]
    fast = [option for option in FAST if not option.startswith("model.")]
    train(compose_config([*fast, "test=false", channels, *small], run_dir=run_dir))
    return run_dir / "checkpoints" / "best.ckpt"


@pytest.fixture(scope="module", autouse=True)
def reused_weights(tmp_path_factory):
    """The first export's weight files, copied by every later export of this module: exporting to ONNX
    costs some 20 s on 2 cores, and the tests after the first are about what happens around the weights."""
    import shutil

    from cellseg.exporters import bioimageio

    cache = tmp_path_factory.mktemp("weights")
    kept: dict = {}

    def weights(net, channels, multiple, settings, folder, describe):
        if not kept:
            kept.update(_export_weights(net, channels, multiple, settings, cache, describe))
        for result in kept.values():
            shutil.copy(result["path"], folder / result["path"].name)
        return {fmt: {**result, "path": folder / result["path"].name} for fmt, result in kept.items()}

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(bioimageio, "_weights", weights)
        yield


@pytest.fixture(scope="module")
def package(checkpoint: Path, tmp_path_factory) -> Path:
    from cellseg.export import export

    output = tmp_path_factory.mktemp("package") / "model.zip"
    export(export_config([f"ckpt={checkpoint}", f"output={output}", "bioimageio.authors=[Ada Lovelace]"]))
    return output


def test_the_package_passes_the_zoo_validation_and_model_test(package: Path):
    from bioimageio.core import test_model
    from bioimageio.spec import InvalidDescr, load_description

    description = load_description(package)
    assert not isinstance(description, InvalidDescr), description.validation_summary.format()
    summary = test_model(package)
    assert summary.status == "passed", summary.format()


def test_the_package_reads_the_source_planes_and_says_how_to_normalise_them(package: Path):
    with zipfile.ZipFile(package) as archive:
        rdf = yaml.safe_load(archive.read("rdf.yaml"))
        names = set(archive.namelist())
    assert {"README.md", "cover.png", "test_input.npy", "test_output.npy"} <= names
    assert set(rdf["weights"]) == {"torchscript", "onnx"}
    (inputs,), (outputs,) = rdf["inputs"], rdf["outputs"]
    # the merge of nucleus and cytoplasm runs inside the network: the package reads the three planes
    assert inputs["axes"][1]["channel_names"] == ["nucleus", "cytoplasm", "membrane"]
    assert [step["id"] for step in inputs["preprocessing"]][:3] == ["ensure_dtype", "scale_range", "clip"]
    scale = inputs["preprocessing"][1]["kwargs"]
    assert (scale["min_percentile"], scale["max_percentile"], scale["axes"]) == (1.0, 99.8, ["y", "x"])
    assert outputs["axes"][1]["channel_names"] == ["background", "cell"]
    assert inputs["axes"][2]["size"] == {"min": 72, "step": 8}  # > 2 x halo 32, on the U-Net's stride
    assert rdf["authors"] == [{"name": "Ada Lovelace"}]
    assert rdf["config"]["cellseg"]["class_names"] == ["background", "cell"]
    report = json.loads(package.with_name(package.name + ".json").read_text())
    assert report["model_test"] == "passed" and report["inputs"] == ["nucleus", "cytoplasm", "membrane"]


def test_meanstd_becomes_fixed_statistics_of_the_planes_read():
    from cellseg.exporters.bioimageio import preprocessing

    normalization = Normalization(method="meanstd", mean=[1.0, 2.0, 3.0], std=[4.0, 5.0, 6.0])
    steps, _ = preprocessing(normalization, used=(0, 2))
    kwargs = steps[1].kwargs
    assert (steps[1].id, list(kwargs.mean), list(kwargs.std)) == (
        "fixed_zero_mean_unit_variance",
        [1.0, 3.0],
        [4.0, 6.0],
    )


def test_a_failing_model_test_writes_nothing(checkpoint: Path, tmp_path, monkeypatch):
    """Expected outputs that the package cannot reproduce: the zoo's test fails and no file is left."""
    from cellseg.export import export
    from cellseg.exporters import bioimageio

    real = bioimageio.cellseg_prediction
    monkeypatch.setattr(bioimageio, "cellseg_prediction", lambda model, image: real(model, image) + 0.5)
    output = tmp_path / "model.zip"
    with pytest.raises(
        ExportError, match=r"model test failed \(weights\.\w+: Output 'prediction'.*nothing was written"
    ):
        export(export_config([f"ckpt={checkpoint}", f"output={output}"]))
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("bioimageio.authors=[]", "bioimageio.authors"),
        ("bioimageio.halo=-1", "bioimageio.halo"),
        ("bioimageio.sample=/no/such/image.tif", "bioimageio.sample '/no/such/image.tif' is not a file"),
    ],
)
def test_bad_package_options_are_named_before_the_checkpoint_is_read(override, message, tmp_path):
    with pytest.raises(ConfigError, match=message):
        check_settings(export_config([f"ckpt={tmp_path / 'missing.ckpt'}", override]))


def test_an_existing_package_is_refused_unless_overwrite(checkpoint: Path, tmp_path):
    output = tmp_path / "model.zip"
    output.write_bytes(b"keep me")
    with pytest.raises(RunExistsError, match="overwrite=true"):
        check_settings(export_config([f"ckpt={checkpoint}", f"output={output}"]))
    assert output.read_bytes() == b"keep me"


def test_missing_packages_name_the_extra(monkeypatch, tmp_path):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *a: None if name.startswith("bioimageio") else real(name, *a),
    )
    with pytest.raises(ConfigError, match=r"bioimageio.spec, bioimageio.core.*cellseg\[bioimageio\]"):
        check_settings(export_config([f"ckpt={tmp_path / 'missing.ckpt'}"]))


def test_a_sample_image_becomes_the_test_input(checkpoint: Path, tmp_path):
    """A real image (here a 5-plane TIFF) is cropped to an accepted size; the test input holds the planes read."""
    import tifffile

    from cellseg.export import export

    planes = np.random.default_rng(1).integers(0, 4096, (5, 150, 140), dtype=np.uint16)
    tifffile.imwrite(tmp_path / "sample.tif", planes)
    output = tmp_path / "model.zip"
    export(
        export_config(
            [f"ckpt={checkpoint}", f"output={output}", f"bioimageio.sample={tmp_path / 'sample.tif'}"]
        )
    )
    with zipfile.ZipFile(output) as archive, archive.open("test_input.npy") as handle:
        test_input = np.load(handle)
    assert test_input.shape == (1, 3, 144, 136)  # 72 + k * 8: the largest accepted sizes inside 150 x 140
    np.testing.assert_array_equal(test_input[0], planes[[0, 1, 2], 3:147, 2:138])


@pytest.mark.slow  # its own training run and ONNX export (about a minute on 2 cores)
def test_a_network_that_exports_at_one_size_makes_a_fixed_size_batch_one_package(tmp_path):
    """A valid-convolution U-Net traces at input_size only: the package says so (fixed H, W and batch 1),
    and the zoo's model test passes on it."""
    from bioimageio.core import test_model

    from cellseg.export import export

    run_dir = tmp_path / "run"
    fast = [option for option in FAST if not option.startswith("model.")]
    valid = ["model=unet_classic", "model.init_features=4", "model.depth=2", "model.padding=valid"]
    train(compose_config([*fast, "test=false", *valid], run_dir=run_dir))
    output = tmp_path / "model.zip"
    with pytest.MonkeyPatch.context() as patch:  # this module's weight cache is for the other checkpoint
        from cellseg.exporters import bioimageio

        patch.setattr(bioimageio, "_weights", _export_weights)
        export(export_config([f"ckpt={run_dir / 'checkpoints' / 'best.ckpt'}", f"output={output}"]))
    with zipfile.ZipFile(output) as archive:
        (inputs,) = yaml.safe_load(archive.read("rdf.yaml"))["inputs"]
    assert inputs["axes"][0] == {"type": "batch", "size": 1}
    assert [axis["size"] for axis in inputs["axes"][2:]] == [64, 64]  # the checkpoint's crop size
    assert test_model(output).status == "passed"
