"""Training throughput of cellseg against a hand-written PyTorch loop (a benchmark, not a test).

    python bench/train.py                         # CPU, and CUDA when available
    python bench/train.py --devices cpu --rounds 3 --steps 10

Three ways of training the same network on the same batches, alternated in one process for
``--rounds`` rounds (these machines are noisy: the medians and their ratios are what count):

- ``plain``: the loop a user would write: the network (the registry's smp U-Net, ResNet34 encoder),
  Adam, cross-entropy, the same precision, over batches drawn once from cellseg's own loader and kept
  on the device;
- ``bare``: cellseg's data module and LightningModule in a Trainer with no callbacks, logger or
  checkpoints (the Lightning loop, cellseg's training-step metrics and its loader);
- ``configured``: ``cellseg.training.train`` as ``python -m cellseg.train`` runs it (its callbacks,
  loggers, checkpoint plug-in and progress bar), for one epoch of exactly the steps timed (the
  validation and checkpoints after it, which the plain loop does not do, are not timed).

Each variant's steps after ``--warmup`` are timed from the start of the first to the end of the last;
``wait`` is the share of that time spent between one batch's end and the next one's start (the loader).
"""

from __future__ import annotations

import argparse
import platform
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig, open_dict

from cellseg.build import build_training
from cellseg.config import config_dir


def compose_config(overrides: list[str], run_dir: Path | None = None) -> DictConfig:
    """The training config as ``python -m cellseg.train <overrides>`` composes it."""
    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        cfg = compose(config_name="train", overrides=overrides)
    if run_dir is not None:
        with open_dict(cfg):
            cfg.paths.run_dir = str(run_dir)
    return cfg


class StepTimer(pl.Callback):
    """Wall time of the training steps after ``warmup``, and the share of it spent waiting for data."""

    def __init__(self, warmup: int, device: str, last: int | None = None) -> None:
        """``last``: the index of the final step; the device is synchronised only at the first timed
        step and after it (a sync per step would cost cellseg time the plain loop does not pay)."""
        self.warmup, self.device, self.last = warmup, device, last
        self.started = self.ended = self.last_end = None
        self.waiting, self.steps = 0.0, 0

    def _now(self, sync: bool = False) -> float:
        if sync and self.device == "cuda":
            torch.cuda.synchronize()
        return time.perf_counter()

    def on_train_batch_start(self, trainer, module, batch, batch_idx) -> None:
        if trainer.global_step < self.warmup:
            return
        now = self._now(sync=self.started is None)
        if self.started is None:
            self.started = now
        elif self.last_end is not None:
            self.waiting += now - self.last_end

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx) -> None:
        if self.started is None:
            return
        self.last_end = self.ended = self._now(sync=trainer.global_step - 1 == self.last)
        self.steps += 1

    def result(self, batch: int) -> dict[str, float]:
        elapsed = self.ended - self.started
        return {
            "steps_per_s": self.steps / elapsed,
            "images_per_s": self.steps * batch / elapsed,
            "wait": self.waiting / elapsed,
        }


def overrides(args: argparse.Namespace, device: str, steps: int) -> list[str]:
    """The run: smp U-Net ResNet34, batch B of crops, no augmentation, one epoch longer than the timing."""
    return [
        "model=unet",
        "model.encoder=resnet34",
        "augmentation=none",
        f"data.batch_size={args.batch}",
        f"data.crop_size={args.crop}",
        f"data.size={args.crop}",
        f"data.num_train={args.batch * steps}",  # one epoch of exactly the steps timed
        "data.num_val=2",
        "data.num_test=0",
        "test=false",
        "trainer.max_epochs=1",
        f"trainer.accelerator={'gpu' if device == 'cuda' else 'cpu'}",
        f"trainer.precision={args.precision if device == 'cuda' else '32'}",
        "trainer.num_sanity_val_steps=0",
        "loss=ce",
    ]


def run_plain(args: argparse.Namespace, device: str, steps: int) -> dict[str, float]:
    """The hand-written loop on cellseg's network and batches (drawn before the clock starts)."""
    cfg = compose_config(overrides(args, device, steps))
    datamodule, module = build_training(cfg)
    datamodule.setup("fit")
    batches = []
    for batch in datamodule.train_dataloader():
        batches.append((batch["image"].to(device), batch["mask"].to(device)))
        if len(batches) == steps:
            break
    net = module.net.to(device).train()
    optimizer = torch.optim.Adam(net.parameters(), lr=float(cfg.optimizer.lr))
    autocast = torch.autocast(
        "cuda", dtype=torch.bfloat16, enabled=device == "cuda" and "bf16" in args.precision
    )
    timer = StepTimer(0, device)
    for index, (image, mask) in enumerate(batches):
        if index == args.warmup:
            timer.started = timer._now(sync=True)
        optimizer.zero_grad(set_to_none=True)
        with autocast:
            loss = torch.nn.functional.cross_entropy(net(image), mask.long(), ignore_index=-100)
        loss.backward()
        optimizer.step()
        if index >= args.warmup:
            timer.steps += 1
    timer.ended = timer._now(sync=True)
    return timer.result(args.batch)


def run_bare(args: argparse.Namespace, device: str, steps: int) -> dict[str, float]:
    """cellseg's data module and module in a Trainer without callbacks, loggers or checkpoints."""
    cfg = compose_config(overrides(args, device, steps))
    datamodule, module = build_training(cfg)
    timer = StepTimer(args.warmup, device, last=steps - 1)
    trainer = pl.Trainer(
        accelerator="gpu" if device == "cuda" else "cpu",
        devices=1,
        precision=args.precision if device == "cuda" else "32",
        max_steps=steps,
        limit_val_batches=0,
        callbacks=[timer],
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    trainer.fit(module, datamodule=datamodule)
    return timer.result(args.batch)


def run_configured(args: argparse.Namespace, device: str, steps: int) -> dict[str, float]:
    """``cellseg.training.train`` itself, with a timer added to the callbacks it builds."""
    import cellseg.training as training

    timer = StepTimer(args.warmup, device, last=steps - 1)
    built = training.build_callbacks
    with tempfile.TemporaryDirectory() as tmp:
        training.build_callbacks = lambda cfg: [*built(cfg), timer]
        try:
            training.train(compose_config(overrides(args, device, steps), run_dir=Path(tmp) / "run"))
        finally:
            training.build_callbacks = built
    return timer.result(args.batch)


VARIANTS: dict[str, Callable[[argparse.Namespace, str, int], dict[str, float]]] = {
    "plain": run_plain,
    "bare": run_bare,
    "configured": run_configured,
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--devices", nargs="+", default=["cpu", "cuda"])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=10, help="timed steps per variant and round")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--crop", type=int, default=128)
    parser.add_argument("--precision", default="bf16-mixed", help="on CUDA (CPU runs 32)")
    args = parser.parse_args()
    pl.seed_everything(0, workers=True)
    print(f"{platform.node()}, torch {torch.__version__}, {torch.get_num_threads()} threads")
    for device in args.devices:
        if device == "cuda" and not torch.cuda.is_available():
            print("cuda: not available, skipped")
            continue
        results: dict[str, list[dict[str, Any]]] = {name: [] for name in VARIANTS}
        for round_index in range(args.rounds):
            for name, run in VARIANTS.items():
                result = run(args, device, args.warmup + args.steps)
                results[name].append(result)
                print(
                    f"{device} round {round_index + 1} {name:>10}: {result['steps_per_s']:.3f} steps/s, "
                    f"{result['images_per_s']:.1f} images/s, waiting for data {result['wait']:.1%}",
                    flush=True,
                )
        plain = statistics.median(r["steps_per_s"] for r in results["plain"])
        print(
            f"\n{device}: median of {args.rounds} rounds ({args.steps} timed steps each, batch {args.batch}, "
            f"{args.crop}-px crops)"
        )
        print(
            "| variant | steps/s | images/s | / plain | waiting for data |\n| --- | --- | --- | --- | --- |"
        )
        for name, rounds in results.items():
            speed = statistics.median(r["steps_per_s"] for r in rounds)
            images = statistics.median(r["images_per_s"] for r in rounds)
            wait = statistics.median(r["wait"] for r in rounds)
            print(f"| {name} | {speed:.3f} | {images:.1f} | {speed / plain:.2f} | {wait:.1%} |")


if __name__ == "__main__":
    main()
