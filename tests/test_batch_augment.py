"""``augmentation.device=gpu``: the CPU pipelines' transforms, presets and ranges applied to a batch on its
device (here on CPU tensors): labels keep their values and stay aligned, the geometry is the CPU warps',
draws are reproducible per sample, and a training step and ``show augment`` go through it."""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

import albumentations as A
import cv2
import numpy as np
import pytest
import torch
from albumentations.augmentations.geometric import functional as fgeometric
from omegaconf import OmegaConf

from cellseg.build import build_augmentation, build_datamodule
from cellseg.data.pipeline.batch_augment import (
    Affine,
    BatchAugmentation,
    BrightnessContrast,
    CornerJitter,
    Elastic,
    Flip,
    Frame,
    Geometric,
    Perspective,
    Rot90,
    opencv_kernel_size,
    sample_bilinear,
)
from cellseg.data.pipeline.targets import BinaryTarget, FlowTarget
from cellseg.data.pipeline.weight_maps import UNetWeightMap
from cellseg.errors import ConfigError
from cellseg.instances.flows import flows_from_instances
from cellseg.show import show
from cellseg.training import train
from cellseg.visualisation.figures import HEADER
from tests.conftest import FAST, TINY, compose_config
from tests.test_instance_targets import symmetric_cells
from tests.test_show import SMALL_DATA, png, show_config, size_of

CPU = torch.device("cpu")
SIZE = 64
FLOWS = FlowTarget().regression_names
#: seed 004's (alpha, sigma, alpha_affine) for 512 px slices
SEED_004 = [(1024.0, 40.96, 40.96), (1024.0, 25.6, 25.6), (1536.0, 35.84, 46.08), (1536.0, 61.44, 35.84)]
#: preset 0 scaled from 512 to 64 px (as given, it moves a 64 px sample by up to ~260 px and folds it over)
ELASTIC_64 = ("augmentation.alpha=128", "augmentation.sigma=5.12", "augmentation.alpha_affine=5.12")


def batch_augmentation(name: str, *overrides: str, flows: bool = False) -> BatchAugmentation:
    """The batch version of the ``augmentation=<name>`` config, as training builds it for a binary target
    (or ``flows``), elastic's preset scaled to 64 px samples unless ``overrides`` are given."""
    if name == "elastic" and not overrides:
        overrides = ELASTIC_64
    node = compose_config([f"augmentation={name}", "augmentation.device=gpu", *overrides]).augmentation
    return build_augmentation(node, FlowTarget() if flows else BinaryTarget())


def always(augmentation: BatchAugmentation, kinds: tuple[type, ...] | None = None) -> BatchAugmentation:
    """The same steps (or those of ``kinds``) applied to every sample."""
    steps = [
        dataclasses.replace(s, p=1.0) for s in augmentation.steps if kinds is None or isinstance(s, kinds)
    ]
    return BatchAugmentation(tuple(steps), augmentation.regression_names)


def cell_batch(seeds: list[int]) -> dict[str, torch.Tensor]:
    """Touching cells, a disk and an unannotated corner (-1), with what the data set would put beside
    them: classes (ignore_index there), the U-Net weight map, flows and an image that shows the cells."""
    instances = symmetric_cells(SIZE)
    instances[54:62, 2:12] = -1
    ramp = np.linspace(0.0, 0.3, SIZE, dtype=np.float32)[None, :].repeat(SIZE, 0)
    image = np.stack([(instances > 0) * 0.6 + ramp, ramp.T])
    one = {
        "image": torch.from_numpy(image.astype(np.float32)),
        "mask": torch.from_numpy(BinaryTarget()(instances)),
        "instances": torch.from_numpy(instances.astype(np.int64)),
        "weight_map": torch.from_numpy(UNetWeightMap()(np.maximum(instances, 0))),
        "regression": torch.from_numpy(flows_from_instances(instances)),
    }
    batch = {key: value.expand(len(seeds), *value.shape).clone() for key, value in one.items()}
    return {**batch, "augment_seed": torch.tensor(seeds)}


# --- the same transforms, presets and ranges as the CPU pipelines -------------------------------------


def test_basic_and_fastai_have_the_cpu_transforms_settings():
    assert batch_augmentation("basic").steps == (
        Flip(axis="x", p=0.5),
        Flip(axis="y", p=0.5),
        Rot90(p=0.5),
        Affine(
            scale_x=(0.9, 1.1),
            scale_y=(0.9, 1.1),
            keep_ratio=False,
            rotate=(-15.0, 15.0),
            shear_x=(0.0, 0.0),
            shear_y=(0.0, 0.0),
            translate_percent=((-0.05, 0.05), (-0.05, 0.05)),
            translate_px=None,
            border="reflect101",
            p=0.5,
        ),
        BrightnessContrast(brightness=(-0.1, 0.1), contrast=(-0.1, 0.1), p=0.5),
    )
    fastai = batch_augmentation("fastai").steps
    assert [type(step) for step in fastai] == [Flip, Affine, Perspective, BrightnessContrast]
    assert fastai[0] == Flip(axis="x", p=0.5)  # fastai flips no vertical axis
    assert (fastai[1].rotate, fastai[1].scale_x, fastai[1].scale_y) == ((-10.0, 10.0), (1.0, 1.1), (1.0, 1.1))
    assert fastai[2] == Perspective(scale=(0.0, 0.05), border="replicate", p=0.75)
    assert fastai[3] == BrightnessContrast(brightness=(-0.2, 0.2), contrast=(-0.2, 0.2), p=0.75)
    assert fastai[1].border == "replicate" and fastai[1].p == 0.75


@pytest.mark.parametrize("preset", range(4))
def test_elastic_presets_are_seed_004s(preset):
    alpha, sigma, alpha_affine = SEED_004[preset]
    steps = batch_augmentation("elastic", f"augmentation.preset={preset}").steps
    assert steps[:3] == (Flip(axis="x", p=0.5), Flip(axis="y", p=0.5), Rot90(p=0.5))
    assert steps[3] == CornerJitter(alpha_affine=alpha_affine, p=0.5)
    assert steps[4] == Elastic(
        alpha=alpha, sigma=sigma, kernel_size=opencv_kernel_size(sigma), border="reflect101", p=0.5
    )
    override = batch_augmentation("elastic", f"augmentation.preset={preset}", "augmentation.alpha=300").steps
    assert override[4].alpha == 300.0 and override[4].sigma == sigma


#: (config, step type, parameter, low, high): the CPU transforms' ranges (translations in whole pixels
#: of a 64 px sample, as albumentations truncates them).
RANGES = [
    ("basic", Affine, "scale_x", 0.9, 1.1),
    ("basic", Affine, "scale_y", 0.9, 1.1),
    ("basic", Affine, "angle", -15.0, 15.0),
    ("basic", Affine, "translate_x", -3.0, 3.0),
    ("basic", Affine, "translate_y", -3.0, 3.0),
    ("basic", Rot90, "k", 0, 3),
    ("basic", BrightnessContrast, "alpha", 0.9, 1.1),
    ("basic", BrightnessContrast, "beta", -0.1, 0.1),
    ("fastai", Affine, "scale_x", 1.0, 1.1),
    ("fastai", Affine, "angle", -10.0, 10.0),
    ("fastai", Perspective, "spread", 0.0, 0.05),
    ("fastai", BrightnessContrast, "alpha", 0.8, 1.2),
    ("fastai", BrightnessContrast, "beta", -0.2, 0.2),
    ("elastic", CornerJitter, "jitter", -5.12, 5.12),
]


@pytest.mark.parametrize("name", ["basic", "fastai", "elastic"])
def test_draws_cover_the_cpu_ranges_and_probabilities(name):
    # every step but the elastic field (its noise is checked against OpenCV's smoothing below)
    steps = tuple(s for s in batch_augmentation(name).steps if not isinstance(s, Elastic))
    count = 2000
    drawn = BatchAugmentation(steps).draw(list(range(count)), Frame(count, SIZE, SIZE, CPU))
    for step, params in zip(steps, drawn, strict=True):
        assert abs(params["apply"].double().mean().item() - step.p) < 0.04, step
        if isinstance(step, Perspective):  # each corner moves inwards by less than 0.32 of the side
            inward = torch.minimum(params["corners"], SIZE - params["corners"]) / SIZE
            assert inward.min() >= 0 and inward.max() < 0.32
    for config, kind, key, low, high in RANGES:
        if config != name:
            continue
        values = next(p[key] for s, p in zip(steps, drawn, strict=True) if isinstance(s, kind)).double()
        margin = 0.02 * (high - low)
        assert low <= values.min() <= low + margin and high - margin <= values.max() <= high, (kind, key)


def test_elastic_fields_are_opencvs_smoothing_of_the_noise():
    """Same noise, same field as albumentations' ElasticTransform (up to where it blurs dx into dy)."""
    alpha, sigma, size = 34.0, 4.0, 64
    radius = opencv_kernel_size(sigma) // 2
    dx, dy = fgeometric.generate_displacement_fields(
        (size, size), alpha, sigma, False, (0, 0), np.random.default_rng(5), "uniform"
    )
    noise = np.random.default_rng(5).uniform(-1, 1, size=(2, size, size)).astype(np.float32)
    step = Elastic(alpha=alpha, sigma=sigma, kernel_size=opencv_kernel_size(sigma), p=1.0)
    ours = step.displacement(torch.from_numpy(noise)[None])[0].numpy()
    # albumentations blurs dx stacked over dy: dx's last and dy's first `radius` rows see each other
    np.testing.assert_allclose(ours[0, : size - radius], dx[: size - radius], atol=1e-4)
    np.testing.assert_allclose(ours[1, radius:], dy[radius:], atol=1e-4)


def smooth_image(height: int = SIZE, width: int = 80) -> np.ndarray:
    yy, xx = np.mgrid[:height, :width].astype(np.float32)
    return (np.sin(xx / 5) + np.cos(yy / 7)).astype(np.float32)


def warped(augmentation: BatchAugmentation, drawn: list[dict], image: np.ndarray) -> np.ndarray:
    frame = Frame(1, *image.shape, CPU)
    points, _ = augmentation.source_points(drawn, frame, jacobian=False)
    return sample_bilinear(torch.from_numpy(image)[None, None], points)[0, 0].numpy()


def test_affine_and_perspective_matrices_are_albumentations():
    image = smooth_image()
    height, width = image.shape
    basic = always(batch_augmentation("basic"), (Affine,))
    drawn = basic.draw([3], Frame(1, height, width, CPU))
    params = {key: float(value[0]) for key, value in drawn[0].items()}
    expected = fgeometric.create_affine_transformation_matrix(
        {"x": params["translate_x"], "y": params["translate_y"]},
        {"x": params["shear_x"], "y": params["shear_y"]},
        {"x": params["scale_x"], "y": params["scale_y"]},
        params["angle"],
        fgeometric.center((height, width)),
    )
    np.testing.assert_allclose(basic.steps[0].forward_matrix(drawn[0], height, width)[0], expected, atol=1e-9)
    # one warp, borders mirrored (reflect-101) as cv2.warpAffine mirrors them
    cpu = cv2.warpAffine(image, expected[:2], (width, height), flags=cv2.INTER_LINEAR, borderMode=4)
    np.testing.assert_allclose(warped(basic, drawn, image), cpu, atol=1e-4)

    perspective = always(batch_augmentation("fastai"), (Perspective,))
    drawn = perspective.draw([4], Frame(1, height, width, CPU))
    corners = drawn[0]["corners"][0].numpy().astype(np.float32)
    matrix, max_width, max_height = fgeometric.compute_perspective_params(corners, (height, width))
    expected = np.diag([width / max_width, height / max_height, 1.0]) @ matrix  # keep_size
    ours = perspective.steps[0].forward_matrix(drawn[0], height, width)[0]
    np.testing.assert_allclose(ours, expected, rtol=1e-5, atol=1e-5)


def cpu_warps(augmentation: BatchAugmentation, drawn: list[dict], image: np.ndarray) -> np.ndarray:
    """The image through OpenCV's warps, one per step, as the CPU path runs them, with the same parameters."""
    height, width = image.shape
    grid = np.stack(np.meshgrid(np.arange(width), np.arange(height))).astype(np.float32)
    for step, params in zip(augmentation.steps, drawn, strict=True):
        border = cv2.BORDER_REFLECT_101 if step.border == "reflect101" else cv2.BORDER_REPLICATE
        if isinstance(step, Elastic):
            maps = grid + params["field"][0].numpy()
            image = cv2.remap(image, maps[0], maps[1], cv2.INTER_LINEAR, borderMode=border)
        else:
            matrix = step.forward_matrix(params, height, width)[0].numpy()
            image = cv2.warpPerspective(
                image, matrix, (width, height), flags=cv2.INTER_LINEAR, borderMode=border
            )
    return image


@pytest.mark.parametrize("name", ["elastic", "fastai"])
def test_chained_steps_sample_where_the_cpu_warps_one_after_the_other_do(name):
    """The chain folds each step's points back into the image as its border rule extends it, so each
    output pixel comes from the source point that OpenCV's warps, one after the other, reach. Warping
    the pixels' own coordinates shows it (linear interpolation keeps them exactly, except within a pixel
    of a mirror fold, which the CPU path interpolates across once per step)."""
    height, width = SIZE, 80
    ys, xs = np.mgrid[:height, :width].astype(np.float32)
    chain = always(batch_augmentation(name), (Affine, CornerJitter, Perspective, Elastic))
    for seed in range(3):
        drawn = chain.draw([seed], Frame(1, height, width, CPU))
        error = np.maximum(*(np.abs(warped(chain, drawn, c) - cpu_warps(chain, drawn, c)) for c in (xs, ys)))
        assert np.median(error) < 1e-4 and np.percentile(error, 90) < 1e-3 and error.max() < 1.0, seed


# --- labels, regression maps and determinism ----------------------------------------------------------


@pytest.mark.parametrize("name", ["basic", "elastic", "fastai"])
def test_labels_keep_their_values_and_move_with_the_image(name):
    augmentation = always(batch_augmentation(name, flows=True), (Geometric,))
    batch = cell_batch([0, 1, 2, 3])
    out = augmentation(batch)
    assert "augment_seed" not in out and out["instances"].dtype == torch.int64
    for key in ("mask", "instances", "weight_map"):
        assert set(out[key].unique().tolist()) <= set(batch[key].unique().tolist()), key
    instances, mask = out["instances"], out["mask"]
    assert torch.equal(mask == -100, instances == -1)  # the ignore region moves with the cells
    assert torch.equal(mask == 1, instances > 0)
    assert not torch.equal(instances, batch["instances"])
    # the image's bright pixels (cells 0.6-0.9, background 0-0.3) are where the moved cells are (up to
    # interpolated edges)
    agreement = ((out["image"][:, 0] > 0.45) == (instances > 0)).double().mean()
    assert agreement > 0.94
    off_cells = (instances <= 0)[:, None].expand_as(out["regression"])
    assert torch.all(out["regression"][off_cells] == 0)  # flows stay 0 on background and ignored pixels


def test_brightness_and_contrast_touch_only_the_image_as_albumentations_does():
    augmentation = always(batch_augmentation("basic"), (BrightnessContrast,))
    batch = cell_batch([0, 1])
    batch["image"][0, 0, :4] = -0.5  # out of 0..1, as meanstd normalisation leaves images:
    out = augmentation(batch)  # albumentations clips float images to 0..1, and so does the batch path
    for key in ("mask", "instances", "weight_map", "regression"):
        assert torch.equal(out[key], batch[key]), key
    params = augmentation.draw([0, 1], Frame(2, SIZE, SIZE, CPU))[0]
    cpu = A.RandomBrightnessContrast(p=1.0)
    for i in range(2):
        image = batch["image"][i].permute(1, 2, 0).numpy()
        expected = cpu.apply(image, alpha=float(params["alpha"][i]), beta=float(params["beta"][i]))
        np.testing.assert_allclose(out["image"][i].permute(1, 2, 0).numpy(), expected, atol=1e-6)


def moved_cells(out: dict[str, torch.Tensor], sample: int) -> tuple[np.ndarray, np.ndarray]:
    return out["instances"][sample].numpy(), out["regression"][sample].numpy()


@pytest.mark.parametrize("step", [Flip(axis="x", p=1.0), Flip(axis="y", p=1.0), Rot90(p=1.0)])
def test_flips_and_rot90_equal_torch_flip_and_rot90_flows_included(step):
    augmentation = BatchAugmentation((step,), FLOWS)
    batch = cell_batch([0, 1, 2, 3])
    out = augmentation(batch)
    if isinstance(step, Rot90):
        turns = augmentation.draw([0, 1, 2, 3], Frame(4, SIZE, SIZE, CPU))[0]["k"].tolist()
        assert len(set(turns)) > 2  # these seeds draw several quarter turns
        expect = [lambda x, k=k: torch.rot90(x, k, dims=(-2, -1)) for k in turns]
    else:
        dims = [-1] if step.axis == "x" else [-2]
        expect = [lambda x: torch.flip(x, dims)] * 4
    for i, move in enumerate(expect):
        torch.testing.assert_close(out["image"][i], move(batch["image"][i]), atol=1e-5, rtol=0)
        for key in ("mask", "instances", "weight_map"):
            assert torch.equal(out[key][i], move(batch[key][i])), key
        instances, flows = moved_cells(out, i)
        # exactly the flows of the moved cells (their flows turn with them)
        np.testing.assert_allclose(flows, flows_from_instances(instances), atol=1e-5)


def test_flows_still_lead_into_their_own_cells_after_affine_and_elastic_warps():
    """Approximate (see the module docstring), but each pixel's flow still points inside its cell."""
    for name in ("basic", "elastic"):
        augmentation = always(batch_augmentation(name, flows=True), (Affine, CornerJitter, Elastic))
        out = augmentation(cell_batch([5, 6]))
        for sample in range(2):
            instances, flows = moved_cells(out, sample)
            yy, xx = np.nonzero(instances > 0)
            length = np.hypot(flows[0, yy, xx], flows[1, yy, xx])
            assert np.mean(np.abs(length - 1) < 1e-4) > 0.97  # unit vectors, bar the centres
            step_y = np.clip(np.rint(yy + 2 * flows[0, yy, xx]), 0, SIZE - 1).astype(int)
            step_x = np.clip(np.rint(xx + 2 * flows[1, yy, xx]), 0, SIZE - 1).astype(int)
            assert (instances[step_y, step_x] == instances[yy, xx]).mean() > 0.95


def test_the_same_seed_gives_the_same_batch_another_seed_another():
    augmentation = batch_augmentation("elastic", flows=True)
    first, again = augmentation(cell_batch([1, 2, 3])), augmentation(cell_batch([1, 2, 3]))
    for key, value in first.items():
        assert torch.equal(value, again[key]), key
    other = augmentation(cell_batch([4, 5, 6]))
    assert not torch.equal(first["image"], other["image"])
    # a sample is augmented the same whatever batch it is in
    alone = augmentation(cell_batch([2]))
    assert torch.equal(alone["image"][0], first["image"][1])
    assert torch.equal(alone["instances"][0], first["instances"][1])


# --- config, data set, training and show --------------------------------------------------------------


def test_the_batch_path_is_refused_before_training_where_it_cannot_be_right(monkeypatch):
    with pytest.raises(ConfigError, match=r"augmentation.device=tpu: expected one of cpu, gpu\."):
        build_augmentation(compose_config(["augmentation.device=tpu"]).augmentation, BinaryTarget())
    node = OmegaConf.create({"_target_": "albumentations.Compose", "device": "gpu", "transforms": []})
    node.transforms.append({"_target_": "albumentations.GaussNoise"})
    with pytest.raises(
        ConfigError, match="no batch version of GaussNoise; it has Affine, CornerJitterAffine"
    ):
        build_augmentation(node, BinaryTarget())
    with pytest.raises(ConfigError, match=r"cannot move the regression map\(s\) speed"):
        BatchAugmentation((), ("speed",))
    with pytest.raises(ConfigError, match=r"border_mode must be 4 \(reflect-101\) or 1 \(replicate\)"):
        BatchAugmentation.from_albumentations(A.Compose([A.Affine(rotate=(-5, 5))]))
    with pytest.raises(ConfigError, match=r"RandomRotate90 needs square samples .* data.crop_size"):
        BatchAugmentation((Rot90(p=1.0),)).draw([0], Frame(1, 32, 48, CPU))
    monkeypatch.setitem(sys.modules, "kornia", None)  # as if it were not installed
    with pytest.raises(
        ConfigError, match=r'needs kornia, which is not installed: pip install "cellseg\[gpu\]"'
    ):
        batch_augmentation("basic")


def test_samples_stop_after_the_crop_and_are_cropped_as_on_the_cpu_path():
    small = [*FAST, "data.size=96", "data.crop_size=48"]
    deferred = build_datamodule(compose_config([*small, "augmentation.device=gpu"]))
    plain = build_datamodule(compose_config([*small, "augmentation=none"]))
    for datamodule in (deferred, plain):
        datamodule.setup("fit")
    for index in range(3):
        item, reference = deferred.dataset("train")[index], plain.dataset("train")[index]
        assert int(item["augment_seed"]) >= 0 and "augment_seed" not in reference
        for key in ("image", "mask", "instances"):
            assert torch.equal(item[key], reference[key]), key


def test_a_training_step_augments_its_batch_on_the_device(tmp_path: Path, monkeypatch):
    seen: list[dict] = []
    call = BatchAugmentation.__call__

    def recording(self: BatchAugmentation, batch: dict) -> dict:
        out = call(self, batch)
        seen.append(out)
        return out

    monkeypatch.setattr(BatchAugmentation, "__call__", recording)
    overrides = ["augmentation=elastic", "augmentation.device=gpu", "target=flows"]
    summary = train(compose_config([*TINY, *overrides], run_dir=tmp_path / "run"))
    assert summary["status"] == "completed"
    assert len(seen) == 1  # the one training batch; validation batches are never augmented
    assert seen[0]["regression"].shape == (4, 2, 64, 64) and "augment_seed" not in seen[0]


def test_show_augment_draws_through_the_batch_path(tmp_path: Path):
    output = tmp_path / "augment.png"
    args = [
        "augment",
        *SMALL_DATA,
        "augmentation=elastic",
        "augmentation.device=gpu",
        "samples=1",
        "copies=2",
    ]
    cfg = show_config([*args, "panel=100", f"output={output}"])
    assert show(cfg) == output
    assert size_of(png(output)) == (3 * 100, 100 + HEADER)  # the whole image and two epochs


# --- on a GPU (skipped without one) -------------------------------------------------------------------

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


@pytest.mark.parametrize("name", ["basic", "fastai"])
@pytest.mark.gpu
@needs_cuda
def test_on_a_gpu_the_batch_is_augmented_there_as_on_the_cpu(name):
    """Parameters come from CPU generators, so without elastic noise CUDA makes the CPU's batch."""
    augmentation = batch_augmentation(name, flows=True)
    batch = cell_batch([0, 1, 2, 3])
    on_cpu = augmentation(batch)
    on_gpu = augmentation({key: value.cuda() for key, value in batch.items()})
    assert all(value.is_cuda for value in on_gpu.values())
    torch.testing.assert_close(on_gpu["image"].cpu(), on_cpu["image"], atol=1e-4, rtol=0)
    for key in ("mask", "instances"):  # a point a hair off a pixel's half may round the other way
        assert (on_gpu[key].cpu() != on_cpu[key]).double().mean() < 1e-3, key


@pytest.mark.gpu
@needs_cuda
def test_a_gpu_training_run_augments_its_batches_on_the_gpu(tmp_path: Path):
    overrides = [
        "trainer=gpu",
        "augmentation=elastic",
        "augmentation.device=gpu",
        "target=flows",
        "test=false",
    ]
    summary = train(compose_config([*FAST, *overrides], run_dir=tmp_path / "run"))
    assert summary["status"] == "completed"
