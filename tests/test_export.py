"""``python -m cellseg.export``: exported files reproduce the trained network's logits and carry its metadata;
bad input fails in one line before anything is written."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig

from cellseg.config import config_dir
from cellseg.errors import ConfigError
from cellseg.export import export
from cellseg.exporters import ExportError, check_settings, read_torchscript_metadata
from cellseg.inference.checkpoint import LoadedModel, load_model
from cellseg.training import train
from tests.conftest import FAST, compose_config

# Batch 2, H and W off the network stride (32): a shape neither the export example nor its parity check used.
OTHER_SHAPE = (2, 3, 40, 54)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    """The best checkpoint of a one-epoch resnet18 U-Net run on 64 x 64 synthetic images."""
    run_dir = tmp_path_factory.mktemp("export") / "run"
    train(compose_config([*FAST, "test=false"], run_dir=run_dir))
    return run_dir / "checkpoints" / "best.ckpt"


@pytest.fixture(scope="module")
def loaded(checkpoint: Path) -> LoadedModel:
    """The checkpoint's PyTorch network, the reference the exported files must reproduce."""
    return load_model(checkpoint)


def export_config(overrides: Sequence[str]) -> DictConfig:
    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        return compose(config_name="export", overrides=list(overrides))


def run_export(args: Sequence[str], cwd: Path) -> subprocess.CompletedProcess:
    """``python -m cellseg.export`` as a user runs it, from ``cwd``."""
    return subprocess.run(
        [sys.executable, "-m", "cellseg.export", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "PYTHONWARNINGS": "ignore"},
    )


def _reference(loaded: LoadedModel, x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return loaded.net(x)


def test_torchscript_round_trip_matches_pytorch_and_carries_metadata(checkpoint, loaded, tmp_path):
    output = tmp_path / "model.pt"
    report = export(export_config([f"ckpt={checkpoint}", "format=torchscript", f"output={output}"]))

    x = torch.randn(OTHER_SHAPE, generator=torch.Generator().manual_seed(7))
    with torch.no_grad():
        got = torch.jit.load(str(output), map_location="cpu")(x)
    assert (got - _reference(loaded, x)).abs().max().item() < 1e-4
    metadata = read_torchscript_metadata(output)
    assert metadata["class_names"] == ["background", "cell"] == list(loaded.class_names)
    assert metadata["channel_names"] == list(loaded.channel_names)
    assert metadata["pipeline"]["normalization"] == loaded.pipeline["normalization"]
    assert metadata["input_size"] == [64, 64]  # the checkpoint's crop size
    assert metadata["cellseg_version"]
    assert report["exporter"] == metadata["exporter"] == "torch.jit.script" and report["dynamic"]
    sidecar = json.loads(Path(f"{output}.json").read_text())
    assert sidecar["max_abs_diff"] < 1e-4 and sidecar["input_shape"] == [1, 3, 64, 64]
    assert sidecar["size_mb"] == pytest.approx(output.stat().st_size / 2**20, abs=1e-3)


def test_onnx_export_matches_pytorch_in_onnxruntime_and_carries_metadata(checkpoint, loaded, tmp_path):
    ort = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    output = tmp_path / "model.onnx"
    # The smallest example the dynamic export accepts (one stride), and so the quickest parity check.
    report = export(export_config([f"ckpt={checkpoint}", f"output={output}", "input_size=[32,32]"]))

    session = ort.InferenceSession(str(output), providers=["CPUExecutionProvider"])
    for shape in ((1, 3, 96, 64), OTHER_SHAPE):
        x = torch.randn(shape, generator=torch.Generator().manual_seed(3))
        got = session.run(None, {session.get_inputs()[0].name: x.numpy()})[0]
        assert got.shape == (shape[0], 2, *shape[2:])
        assert abs(got - _reference(loaded, x).numpy()).max() < 1e-4, shape
    metadata = json.loads(session.get_modelmeta().custom_metadata_map["cellseg.json"])
    assert metadata["class_names"] == ["background", "cell"]
    assert metadata["channel_names"] == list(loaded.channel_names)
    assert metadata["dynamic"] is True and metadata["input_multiple"] == 32
    assert report["exporter"] == "torch.onnx.export(dynamo=True)" and report["dynamic"]
    assert [c["shape"][0] for c in report["parity"]] == [1, 2, 1]
    assert report["max_abs_diff"] < 1e-4


def test_export_that_misses_the_tolerance_fails_and_leaves_no_file(checkpoint, tmp_path):
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    output = tmp_path / "out" / "model.onnx"
    cfg = export_config([f"ckpt={checkpoint}", f"output={output}", "dynamic=false", "tolerance=1e-12"])
    with pytest.raises(ExportError, match=r"does not reproduce the PyTorch logits.*> tolerance 1e-12"):
        export(cfg)
    assert list(output.parent.iterdir()) == []  # no model, no temporary file, no report


def test_cli_exports_next_to_the_checkpoint_and_litters_nowhere(checkpoint, tmp_path):
    args = [f"ckpt={checkpoint}", "format=torchscript", "input_size=[48,80]", "dynamic=false"]
    result = run_export(args, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    output = checkpoint.with_name("best.torchscript.pt")
    assert output.is_file() and Path(f"{output}.json").is_file()
    assert "max abs logit difference" in result.stdout
    metadata = read_torchscript_metadata(output)
    assert metadata["input_size"] == [48, 80] and metadata["exporter"] == "torch.jit.trace"
    assert not metadata["dynamic"]
    assert list(tmp_path.iterdir()) == []  # no outputs/, .hydra/ or log file where it was started


def test_cli_refuses_an_existing_output_and_leaves_it_untouched(checkpoint, tmp_path):
    output = tmp_path / "model.pt"
    output.write_bytes(b"an earlier export")
    result = run_export([f"ckpt={checkpoint}", "format=torchscript", f"output={output}"], cwd=tmp_path)
    assert result.returncode == 2
    assert "cellseg: error:" in result.stderr and "already exists" in result.stderr
    assert "overwrite=true" in result.stderr and str(output) in result.stderr
    assert output.read_bytes() == b"an earlier export"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.pt"]


@pytest.mark.slow  # a command-line run; the default suite checks the same in-process
def test_cli_names_a_truncated_checkpoint(checkpoint, tmp_path):
    truncated = tmp_path / "cut.ckpt"
    truncated.write_bytes(checkpoint.read_bytes()[:4096])
    result = run_export([f"ckpt={truncated}"], cwd=tmp_path)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("cellseg: error:"), result.stderr
    assert str(truncated) in lines[0] and "truncated" in lines[0]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cut.ckpt"]


@pytest.mark.slow  # a command-line run; the default suite checks the same in-process
def test_cli_names_the_valid_formats(checkpoint, tmp_path):
    result = run_export([f"ckpt={checkpoint}", "format=bogus"], cwd=tmp_path)
    assert result.returncode == 2
    assert "format is 'bogus'" in result.stderr and "onnx, torchscript" in result.stderr


def test_an_unknown_format_is_named_with_the_valid_ones(checkpoint):
    with pytest.raises(ConfigError, match=r"format is 'bogus'.*onnx, torchscript"):
        check_settings(export_config([f"ckpt={checkpoint}", "format=bogus"]))


@pytest.mark.parametrize("value", ["[64]", "[0,64]", "64", "[64,abc]", "[64,64,64]"])
def test_bad_input_size_is_named(checkpoint, value):
    with pytest.raises(ConfigError, match=r"input_size is .*expected \[H, W\], two positive integers"):
        check_settings(export_config([f"ckpt={checkpoint}", f"input_size={value}"]))


def test_missing_onnx_packages_are_named_before_the_checkpoint_is_read(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # import (and find_spec) now finds nothing
    cfg = export_config([f"ckpt={tmp_path / 'not_there.ckpt'}", "format=onnx"])
    with pytest.raises(ConfigError, match=r'needs onnxruntime.*pip install "cellseg\[onnx\]"'):
        check_settings(cfg)


def test_a_flows_checkpoint_exports_its_maps_and_decoding(tmp_path):
    from cellseg.data.pipeline.targets import FlowTarget
    from tests.inference_helpers import write_checkpoint

    target = FlowTarget(decoding={"flow_threshold": 0.6})
    ckpt = write_checkpoint(
        tmp_path / "flows.ckpt", target=target.describe(), regression_names=target.regression_names
    )
    output = tmp_path / "flows.pt"
    export(export_config([f"ckpt={ckpt}", "format=torchscript", f"output={output}", "input_size=[64,64]"]))
    metadata = read_torchscript_metadata(output)
    assert metadata["regression_names"] == ["flow_y", "flow_x"]
    assert metadata["decoding"]["flow_threshold"] == 0.6
    assert "K class logits" in metadata["output"]
    with torch.no_grad():
        assert torch.jit.load(str(output))(torch.zeros(1, 1, 64, 64)).shape == (1, 4, 64, 64)
