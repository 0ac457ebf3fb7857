"""Cost of augmenting one training batch: albumentations per sample (``augmentation.device=cpu``, what one
loader worker does) against the batch path on a device (``augmentation.device=gpu``); a benchmark, not a test.

    python bench/augment.py                                    # CPU, and CUDA when available
    python bench/augment.py --devices cpu --size 512 --batch 8 --rounds 3

For each of ``basic``, ``elastic`` and ``fastai`` as configured (their probabilities included), the same
batch of ``--batch`` images of ``--size`` px with two channels, classes and instance ids is augmented
``--repeats`` times per round, the two paths alternated for ``--rounds`` rounds; the table gives the
median milliseconds per batch. The CPU path runs on ``--threads`` threads (OpenCV's and torch's; a loader
worker has one), and so does the batch path on the CPU; on CUDA the device is synchronised around each
batch.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time
from collections.abc import Callable

import cv2
import numpy as np
import torch
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate
from omegaconf import OmegaConf

from cellseg.config import config_dir
from cellseg.data.pipeline.batch_augment import BatchAugmentation

PIPELINES = ("basic", "elastic", "fastai")


def pipeline(name: str) -> object:
    """The albumentations pipeline of ``augmentation=<name>``, without its device key."""
    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        node = compose(config_name="train", overrides=[f"augmentation={name}"]).augmentation
    settings = OmegaConf.to_container(node, resolve=True)
    settings.pop("device")
    return instantiate(settings)


def samples(batch: int, size: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Images (B, 2, H, W) in [0, 1] and instance ids (B, H, W) of random disks."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    instances = np.zeros((batch, size, size), np.int64)
    for b in range(batch):
        for cell in range(1, size // 8):
            cy, cx = rng.integers(0, size, 2).tolist()
            r = int(rng.integers(4, 12))
            instances[b][((yy - cy) ** 2 + (xx - cx) ** 2 <= r * r) & (instances[b] == 0)] = cell
    images = np.stack([(instances > 0) * 0.7, rng.random(instances.shape) * 0.3], axis=1).astype(np.float32)
    return images, instances


def cpu_batch(augment: object, images: np.ndarray, instances: np.ndarray, seed: int) -> None:
    """The CPU path: one sample after the other, as a loader worker augments them."""
    for index, (image, labels) in enumerate(zip(images, instances, strict=True)):
        augment.set_random_seed(seed * 1000 + index)
        classes = (labels > 0).astype(np.float32)
        augment(
            image=np.ascontiguousarray(image.transpose(1, 2, 0)), masks=[classes, labels.astype(np.float32)]
        )


def device_batch(
    augment: BatchAugmentation, images: np.ndarray, instances: np.ndarray, device: str
) -> Callable[[int], None]:
    """The batch path on ``device``, the batch already there (as after the transfer)."""
    labels = torch.from_numpy(instances).to(device)
    batch = {
        "image": torch.from_numpy(images).to(device),
        "mask": (labels > 0).long(),
        "instances": labels,
    }

    def run(seed: int) -> None:
        seeds = torch.arange(len(images), device=device) + seed * 1000
        augment({**batch, "augment_seed": seeds})
        if device == "cuda":
            torch.cuda.synchronize()

    return run


def timed(run: Callable[[int], None], repeats: int, first_seed: int) -> float:
    """Milliseconds per batch over ``repeats`` batches."""
    start = time.perf_counter()
    for seed in range(first_seed, first_seed + repeats):
        run(seed)
    return (time.perf_counter() - start) / repeats * 1000


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--devices", nargs="+", default=["cpu", "cuda"] if torch.cuda.is_available() else ["cpu"]
    )
    parser.add_argument("--pipelines", nargs="+", default=list(PIPELINES), choices=PIPELINES)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    cv2.setNumThreads(args.threads)
    torch.set_num_threads(args.threads)
    images, instances = samples(args.batch, args.size)
    print(
        f"{platform.processor() or platform.machine()}, {args.threads} thread(s), torch {torch.__version__}"
        + (f", {torch.cuda.get_device_name()}" if "cuda" in args.devices else "")
        + f"; batches of {args.batch} x 2 x {args.size} x {args.size}, median of {args.rounds} rounds"
        f" of {args.repeats} batches"
    )
    print(
        "| augmentation | "
        + " | ".join(["albumentations, CPU", *(f"batch path, {d}" for d in args.devices)])
        + " |"
    )
    print("| --- " * (2 + len(args.devices)) + "|")
    for name in args.pipelines:
        cpu = pipeline(name)
        batch_path = BatchAugmentation.from_albumentations(cpu)
        runs = {"cpu path": lambda seed, cpu=cpu: cpu_batch(cpu, images, instances, seed)}
        runs.update({d: device_batch(batch_path, images, instances, d) for d in args.devices})
        for run in runs.values():
            run(10_000)  # warm-up: kernels, caches, OpenCV's first calls
        times: dict[str, list[float]] = {key: [] for key in runs}
        for round_ in range(args.rounds):
            for key, run in runs.items():
                times[key].append(timed(run, args.repeats, round_ * args.repeats))
        cells = [f"{statistics.median(times[key]):.1f} ms" for key in runs]
        print(f"| {name} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
