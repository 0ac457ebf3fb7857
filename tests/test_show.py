"""``python -m cellseg.show <what>``: each figure is a PNG of the size its content sets, drawn from what training
really feeds the model; bad requests fail in one line before any work."""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest
import tifffile
import torch
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig
from PIL import Image

from cellseg.build import build_datamodule
from cellseg.config import check_command_line, config_dir
from cellseg.errors import ConfigError, RunExistsError
from cellseg.models import create_model
from cellseg.show import check_before_start, show
from cellseg.visualisation.activations import default_layers
from cellseg.visualisation.figures import HEADER
from cellseg.visualisation.filters import scaled_filters
from cellseg.visualisation.request import TARGETS, with_target_key
from cellseg.visualisation.samples import training_view
from tests.conftest import run_cli

#: A small synthetic data set: 64 px images, 32 px training crops.
SMALL_DATA = [
    "data=synthetic",
    "data.num_train=4",
    "data.num_val=2",
    "data.num_test=2",
    "data.size=64",
    "data.crop_size=32",
]
PANEL = 100


def show_config(args: Sequence[str]) -> DictConfig:
    """The composed config of ``python -m cellseg.show <args>`` (the target word included)."""
    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        return compose(config_name="show", overrides=with_target_key(args))


def png(path: Path) -> np.ndarray:
    """The PNG's RGB pixels; fails when it is blank (one colour, or nearly)."""
    pixels = np.asarray(Image.open(path).convert("RGB"))
    assert pixels.std() > 10 and len(np.unique(pixels.reshape(-1, 3), axis=0)) > 50, f"{path} looks blank"
    return pixels


def size_of(pixels: np.ndarray) -> tuple[int, int]:
    return pixels.shape[1], pixels.shape[0]


@pytest.fixture(scope="module")
def ckpt(trained_run: Path) -> Path:
    """The shared trained run's checkpoint: a 16-feature classic U-Net (depth 4) on 5 synthetic channels."""
    return trained_run / "checkpoints" / "best.ckpt"


@pytest.fixture
def image_file(tmp_path: Path) -> Path:
    """A 5-plane image with the synthetic data's channels (an odd size: padded to the stride)."""
    rng = np.random.default_rng(0)
    path = tmp_path / "field.tif"
    tifffile.imwrite(path, rng.integers(100, 4000, (5, 72, 88), dtype=np.uint16), photometric="minisblack")
    return path


def test_augment_shows_each_sample_whole_then_each_copy(tmp_path):
    output = tmp_path / "augment.png"
    cfg = show_config(
        [
            "augment",
            *SMALL_DATA,
            "augmentation=elastic",
            "samples=2",
            "copies=3",
            f"panel={PANEL}",
            f"output={output}",
        ]
    )
    assert show(cfg) == output
    assert size_of(png(output)) == (4 * PANEL, 2 * PANEL + HEADER)  # columns: whole + 3 epochs; rows: samples


def test_augmented_copy_k_is_what_epoch_k_of_a_run_with_that_seed_draws():
    cfg = show_config(["augment", *SMALL_DATA, "seed=7"])
    torch.manual_seed(7)  # what seed_everything(seed) does before training builds its data module
    training = build_datamodule(cfg)
    replay = training_view(build_datamodule(cfg), "train", seed=7)
    for epoch in (0, 3):
        training.set_epoch(epoch)
        replay.set_epoch(epoch)
        drawn, shown = training.dataset("train")[1], replay[1]
        assert torch.equal(drawn["image"], shown["image"]) and torch.equal(
            drawn["instances"], shown["instances"]
        )
    later = replay[1]["image"]
    replay.set_epoch(0)
    assert not torch.equal(replay[1]["image"], later)  # each epoch draws anew


def test_data_shows_every_split_with_statistics(tmp_path):
    output = tmp_path / "data.png"
    show(show_config(["data", *SMALL_DATA, "samples=2", f"panel={PANEL}", f"output={output}"]))
    # 3 columns (the histograms' minimum); rows: image and classes per split (3), histograms of the 3
    # fluorescence inputs, class balance and cell counts.
    assert size_of(png(output)) == (3 * PANEL, (2 * 3 + 1 + 1) * PANEL + HEADER)


def test_filters_are_a_grid_of_the_first_convolution(ckpt, tmp_path):
    output = tmp_path / "filters.png"
    show(show_config(["filters", f"ckpt={ckpt}", "panel=200", f"output={output}"]))
    # 16 filters of 3 x 3 x 3: a 4 x 4 grid of tiles 100 px wide and 27 + 16 px high (three kernels
    # side by side, 11 px wide with their gaps, 3 high; the tile's number above).
    assert size_of(png(output)) == (4 * 100, 4 * 43 + HEADER)


def test_filters_are_mean_centred_and_max_abs_scaled():
    weight = np.random.default_rng(0).normal(0.3, 2.0, (8, 3, 3, 3))
    scaled = scaled_filters(weight)
    assert np.allclose(scaled.mean(axis=(1, 2, 3)), 0, atol=1e-12)
    assert np.allclose(np.abs(scaled).max(axis=(1, 2, 3)), 1)
    assert np.allclose(scaled[2] * np.abs(weight[2] - weight[2].mean()).max(), weight[2] - weight[2].mean())


def test_activations_show_the_decoder_stages_and_go_to_the_runs_tensorboard(
    ckpt, trained_run, image_file, tmp_path
):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    output = tmp_path / "activations.png"
    args = ["activations", f"ckpt={ckpt}", f"input={image_file}", f"panel={PANEL}", f"output={output}"]
    show(show_config([*args, f"run={trained_run}", "progress=false"]))
    # The input, then bottleneck and up.0..up.3: six panels in one row.
    assert size_of(png(output)) == (6 * PANEL, PANEL + HEADER)
    events = EventAccumulator(str(trained_run / "tensorboard" / "show")).Reload()
    assert "show/activations" in events.Tags()["images"]

    show(show_config([*args, "layers=[up.3]", "overwrite=true", "progress=false"]))
    assert size_of(png(output)) == (2 * PANEL, PANEL + HEADER)


@pytest.mark.parametrize(
    "arch,options,expected",
    [
        ("unet_classic", {"init_features": 8}, ["bottleneck", "up.0", "up.1", "up.2", "up.3"]),
        ("deconvnet", {}, ["deconv5-3", "deconv6-2", "deconv7-2", "deconv8-2", "deconv9-2"]),
        (
            "unet",
            {"encoder": "resnet18", "encoder_weights": None},
            ["encoder.layer4", *(f"decoder.blocks.{i}" for i in range(5))],
        ),
    ],
)
def test_default_layers_are_the_stages_from_coarse_to_fine(arch, options, expected):
    net = create_model(arch, in_channels=2, classes=2, **options).eval()
    assert default_layers(net, 2) == expected


def test_a_layer_that_does_not_exist_fails_listing_the_layers(ckpt, image_file, tmp_path):
    cfg = show_config(
        [
            "activations",
            f"ckpt={ckpt}",
            f"input={image_file}",
            "layers=[up.0,upp.1]",
            f"output={tmp_path / 'a.png'}",
        ]
    )
    with pytest.raises(
        ConfigError,
        match=r"'upp.1' is not a layer of UNetClassic\. Did you mean 'up.1'\? Its layers: .*bottleneck, .*up\.3\.conv",
    ):
        show(cfg)
    assert not (tmp_path / "a.png").exists()


def test_an_unknown_target_lists_the_valid_ones(tmp_path):
    with pytest.raises(
        ConfigError,
        match=re.escape(
            "Unknown show target 'augmnt'. Valid targets: augment, data, filters, activations. Did you mean 'augment'?"
        ),
    ):
        with_target_key(["data=synthetic", "augmnt"])
    result = run_cli(["filtres"], tmp_path, timeout=300, command="cellseg.show")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "cellseg: error: Unknown show target 'filtres'. Valid targets: augment, data, filters, activations. "
        "Did you mean 'filters'?"
    ]
    assert list(tmp_path.iterdir()) == []


def test_the_target_word_becomes_the_last_override_wherever_it_stands():
    assert with_target_key(["--cfg", "job", "data=isbi", "augment"]) == [
        "--cfg",
        "job",
        "data=isbi",
        "what=augment",
    ]
    assert with_target_key(["augment", "-m", "augmentation=basic,elastic"]) == [
        "-m",
        "augmentation=basic,elastic",
        "what=augment",
    ]
    assert with_target_key(["what=data"]) == ["what=data"]
    with pytest.raises(ConfigError, match="takes one target, got augment and data"):
        with_target_key(["augment", "data"])
    with pytest.raises(ConfigError, match="Say what to show"):
        check_command_line([], config_name="show", job_checks=[check_before_start])
    assert set(TARGETS) == {"augment", "data", "filters", "activations"}


def test_an_existing_output_is_refused_unless_overwrite(tmp_path):
    output = tmp_path / "data.png"
    output.write_bytes(b"not a figure")
    message = f"output '{output}' already exists; pass overwrite=true to replace it, or output=<file>."
    with pytest.raises(RunExistsError) as refused:
        show(show_config(["data", *SMALL_DATA, f"output={output}"]))
    assert str(refused.value) == message
    result = run_cli(
        ["data", f"output={output}"], tmp_path, timeout=300, command="cellseg.show"
    )  # refused by the early check
    assert result.returncode == 2 and result.stderr.strip() == f"cellseg: error: {message}"
    assert output.read_bytes() == b"not a figure"

    show(show_config(["data", *SMALL_DATA, "samples=1", f"output={output}", "overwrite=true"]))
    png(output)


@pytest.mark.parametrize(
    "args,message",
    [
        (
            ["filters"],
            "show filters needs ckpt=...: e.g. python -m cellseg.show filters ckpt=<run>/checkpoints/best.ckpt.",
        ),
        (
            ["augment", "output=figure.jpg"],
            "output 'figure.jpg' must be a .png file, e.g. output=figures/figure.png.",
        ),
        (["augment", "copies=0"], "copies=0: expected a whole number >= 1."),
        (["augment", "split=tset"], "split=tset: expected one of train, val, test."),
        (
            ["data", "run=."],
            "run '.' is not a training run folder (no metrics.json or checkpoints/); give the folder",
        ),
    ],
)
def test_bad_requests_fail_in_one_line_before_any_work(args, message, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError) as refused:
        check_command_line(with_target_key(args), config_name="show", job_checks=[check_before_start])
    assert str(refused.value).startswith(message)
    assert list(tmp_path.iterdir()) == []


def test_activations_refuse_an_input_index_the_file_does_not_have(ckpt, image_file, tmp_path):
    args = [
        "activations",
        f"ckpt={ckpt}",
        f"input={image_file}",
        "input_index=1",
        f"output={tmp_path / 'a.png'}",
    ]
    with pytest.raises(ConfigError, match=r"input_index=1: '.*field.tif' holds 1 image\(s\)"):
        check_command_line(with_target_key(args), config_name="show", job_checks=[check_before_start])
