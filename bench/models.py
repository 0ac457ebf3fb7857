"""Benchmark every ``model=`` option: forward+backward images/s and peak memory (not a test).

    python bench/models.py                      # CPU, and CUDA when available
    python bench/models.py --iters 3 --devices cpu --models unet deconvnet

Each option is built from its conf/model/*.yaml (3 input channels, 2 classes) and timed on random
batches of 4 x 3 x 256 x 256 with a cross-entropy backward and an optimizer-free ``zero_grad``, after
warm-up iterations, in a fresh subprocess per model so that peak memory is that model's alone:

- CPU peak memory: the subprocess's maximum resident set size (``resource.getrusage(RUSAGE_SELF)``)
  minus its resident size before the model was built (the interpreter and imported libraries);
- GPU peak memory: ``torch.cuda.max_memory_allocated()`` (tensors only, not the CUDA context).

On CUDA the step runs under bf16 autocast (``--precision``, as ``trainer.precision=mixed`` trains on an
Ampere or newer GPU), and the table adds the model FLOPs utilisation: the FLOP/s that the network's
mult-adds imply (2 FLOPs per mult-add, forward + backward = 3 forward passes, from
:func:`cellseg.models.stats.model_stats`) as a share of the GPU's dense bf16 peak (``PEAK_BF16_TFLOPS``
by device name, or ``--peak-tflops``).
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import time
from datetime import date
from pathlib import Path

CONF = Path(__file__).resolve().parents[1] / "conf" / "model"

#: Dense bf16 tensor-core peaks (TFLOP/s, no sparsity) from the vendors' data sheets, by a name fragment.
PEAK_BF16_TFLOPS = {
    "H200": 989.4,
    "H100 SXM": 989.4,
    "H100 PCIe": 756.0,
    "H100": 989.4,
    "A100": 312.0,
    "L40S": 362.0,
}


def peak_tflops(device_name: str, given: float | None) -> float | None:
    """The bf16 peak of a GPU: ``given``, else the first entry of PEAK_BF16_TFLOPS its name contains."""
    if given:
        return given
    return next((peak for key, peak in PEAK_BF16_TFLOPS.items() if key in device_name), None)


def _rss_mib() -> float:
    """Current resident set size, from /proc (Linux), in MiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def measure(
    name: str, device: str, batch: int, size: int, warmup: int, iters: int, precision: str = "32"
) -> dict:
    """Run in the child process: build, warm up, time, report one JSON line."""
    import resource

    import torch
    import yaml

    from cellseg.models import create_model
    from cellseg.models.stats import model_stats

    torch.manual_seed(0)
    options = yaml.safe_load((CONF / f"{name}.yaml").read_text())
    arch = options.pop("arch")
    base_rss = _rss_mib()
    net = create_model(arch, 3, 2, **options).to(device).train()
    params = sum(p.numel() for p in net.parameters())
    mult_adds = model_stats(net, (3, size, size)).mult_adds  # per image, one forward pass
    autocast = torch.autocast(device, dtype=torch.bfloat16, enabled=device == "cuda" and precision == "bf16")
    x = torch.randn(batch, 3, size, size, device=device)
    y = torch.randint(0, 2, (batch, size, size), device=device)

    def step() -> None:
        net.zero_grad(set_to_none=True)
        with autocast:
            loss = torch.nn.functional.cross_entropy(net(x), y)
        loss.backward()

    for _ in range(warmup):
        step()
    if device == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    for _ in range(iters):
        step()
    if device == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    if device == "cuda":
        peak = torch.cuda.max_memory_allocated() / 2**20
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 - base_rss
    return {
        "model": name,
        "device": device,
        "params": params,
        "images_per_s": batch * iters / seconds,
        "peak_mib": peak,
        "mult_adds": mult_adds,
        "precision": precision if device == "cuda" else "32",
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="*", default=sorted(p.stem for p in CONF.glob("*.yaml")))
    parser.add_argument("--devices", nargs="*", default=None, help="cpu and/or cuda (default: all present)")
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--iters", type=int, default=3)
    parser.add_argument("--precision", choices=("bf16", "32"), default="bf16", help="on CUDA (CPU runs 32)")
    parser.add_argument("--peak-tflops", type=float, help="the GPU's dense bf16 peak, if not in the table")
    parser.add_argument("--child", nargs=2, metavar=("MODEL", "DEVICE"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        result = measure(
            args.child[0], args.child[1], args.batch, args.size, args.warmup, args.iters, args.precision
        )
        print(json.dumps(result))
        return

    import torch

    devices = args.devices or ["cpu", *(["cuda"] if torch.cuda.is_available() else [])]
    rows = []
    for device in devices:
        for name in args.models:
            command = [sys.executable, __file__, "--child", name, device]
            command += ["--batch", str(args.batch), "--size", str(args.size)]
            command += [
                "--warmup",
                str(args.warmup),
                "--iters",
                str(args.iters),
                "--precision",
                args.precision,
            ]
            done = subprocess.run(command, capture_output=True, text=True)
            if done.returncode:
                print(f"{name} on {device} failed:\n{done.stderr[-2000:]}", file=sys.stderr)
                continue
            rows.append(json.loads(done.stdout.strip().splitlines()[-1]))
            print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
    cpu = platform.processor() or platform.machine()
    gpu = torch.cuda.get_device_name() if "cuda" in devices else "none"
    peak = peak_tflops(gpu, args.peak_tflops) if "cuda" in devices else None
    print(
        f"\n{date.today()}, torch {torch.__version__}, CPU {cpu} x {torch.get_num_threads()} threads, GPU {gpu}; "
        f"batch {args.batch} x 3 x {args.size} x {args.size}, forward + backward, {args.iters} timed iterations\n"
    )
    print(
        "| model | device | precision | parameters | GMAC/image | images/s (fwd+bwd) | MFU | peak memory (MiB) |"
    )
    print("| --- | --- | --- | ---: | ---: | ---: | ---: | ---: |")
    for r in rows:
        tflops = 2 * 3 * r["mult_adds"] * r["images_per_s"] / 1e12
        mfu = f"{tflops / peak:.1%}" if r["device"] == "cuda" and peak else "-"
        print(
            f"| {r['model']} | {r['device']} | {r['precision']} | {r['params'] / 1e6:.1f} M | "
            f"{r['mult_adds'] / 1e9:.1f} | {r['images_per_s']:.2f} | {mfu} | {r['peak_mib']:,.0f} |"
        )
    if "cuda" in devices and peak is None:
        print(f"\nNo bf16 peak known for {gpu}: pass --peak-tflops for the MFU column.")


if __name__ == "__main__":
    main()
