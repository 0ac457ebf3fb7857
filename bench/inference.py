"""Benchmark cellseg's tiled prediction against MONAI's sliding_window_inference (not a test).

    python bench/inference.py                        # comparison at 1024 px + memory sweep 1024/4096/8192
    python bench/inference.py --quick                # a smoke run: 512 px comparison, 1 repeat, sweep 1024/2048
    python bench/inference.py --sweep-model same --sizes 1024 4096 8192 --compare-size 0   # real model
    python bench/inference.py --device cuda --json inference.json

Needs MONAI (``pip install -e .[bench]``). One deterministic synthetic image (1 channel, float32: smooth
stripes plus noise), one randomly initialised network (``--arch``/``--encoder``, 2 classes, eval mode,
fp32 everywhere, no AMP) and the same tile size, overlap, blending, sigma_scale and batch of tiles for
both libraries. Both predict softmax probabilities and accumulate them on the CPU (MONAI with
``sw_device=<device>, device="cpu"``, as cellseg's ``predict_tiled`` does).

1. Comparison at ``--compare-size`` px, for gaussian and constant blending: tiles (network passes) per
   second, wall seconds (best of ``--repeats``, after an untimed warm-up: the method on one tile-sized
   crop, then one batch of tiles through the network) and peak memory of

   - ``cellseg``: ``predict_tiled`` as ``python -m cellseg.predict`` runs it: mirror-padded margins and
     tile starts aligned to the network stride (``input_multiple(net)``);
   - ``cellseg, matched``: ``padding="none"`` and ``multiple=1``, i.e. MONAI's window placement;
   - ``MONAI``: ``sliding_window_inference`` with its own importance map;
   - ``MONAI, cellseg window`` (gaussian only): the same with ``roi_weight_map=blend_window(...)``;

   and the max and mean absolute difference of each probability map from MONAI's, and its max
   difference from ``cellseg, matched``'s.
2. Memory sweep over ``--sizes``: peak memory of ``cellseg`` and ``MONAI`` (gaussian blending) per image
   size. ``--sweep-model conv`` (the default) runs it with a single 3x3 convolution instead of the
   network, so that 8192 px (1,849 tiles) takes seconds, not minutes, and the figures are the tiling's own
   cost (image-size buffers, a batch of tiles) plus next to no activations; ``--sweep-model same`` uses
   the compared network (a resnet18 U-Net took 3 to 3.5 min per method at 8192 px with 1 thread of a
   shared 2-core CPU), whose activations for one batch of tiles add a roughly constant 150-250 MiB.

On a CPU shared with other processes pass ``--threads 1``: oversubscribed OpenMP threads made the same
prediction 10-40 times slower, and erratic, here (2 cores, another engineer's jobs running).

Every measurement runs in a fresh subprocess (this script with a hidden ``--worker`` flag) so that its
peak is its own:

- CPU peak memory: the peak resident set size while predicting minus the resident size just before
  (model built, image allocated). The peak is reset first by writing 5 to ``/proc/self/clear_refs``
  (Linux >= 4.0; it resets ``VmHWM`` and with it ``ru_maxrss``), so the imports' and model building's own
  transient peaks do not hide a smaller prediction peak; where that is refused, ``ru_maxrss`` since
  process start is used and the table says so. Each repeat frees the previous output first.
- GPU peak memory (``--device cuda``): ``torch.cuda.max_memory_allocated()`` minus the memory allocated
  before predicting (tensors only, not the CUDA context).

Why the probability maps differ (found by reading monai/inferers/utils.py and monai/data/utils.py of
MONAI 1.6.1, and by the ``MONAI, cellseg window`` row):

- Window placement is the same for ``cellseg, matched``: both step ``int(tile * (1 - overlap))`` pixels
  from 0 and shift the last window back to end at the image border (``dense_patch_slices`` /
  ``tile_starts``), and both visit the windows row by row in batches of the same size, so the network
  sees bit-identical batches. With constant blending the two outputs are identical (difference 0).
- The gaussian importance maps differ. MONAI: ``exp(-x**2 / (2 sigma**2))`` per axis, x from -(n-1)/2 to
  (n-1)/2, sigma = sigma_scale * n, not normalised (peak 0.99976 at n = 256), clamped from below at
  ``max(min, 1e-3)``. cellseg's ``blend_window``: the same gaussian in float64, normalised to peak 1,
  clamped at ``max(smallest positive, 1e-6)``. The normalisation cancels in the blend; the floor does
  not: at tile 256 and sigma_scale 0.125 the 2-D gaussian is below 1e-3 outside a circle of radius
  sigma * sqrt(2 ln 1000) = 119 px around the tile centre, i.e. in the tile's corners, 32 % of its area.
  There MONAI weighs every tile 1e-3 (up to 1,000 times cellseg's weight), so where every tile covering a
  pixel has it in its corner zone (the four-tile overlaps, and the two-tile overlaps along the outermost
  rows and columns of tiles) MONAI averages those tiles equally while cellseg still favours the one whose
  centre is nearer. A randomly initialised network's tiles disagree
  strongly near their borders (zero-padded convolutions), hence a max difference near 0.5 there (0.497
  at 512 px), a mean of ~5e-3; a trained network's tiles agree more, so the difference would be smaller.
  Passing cellseg's window to MONAI as ``roi_weight_map`` makes the outputs identical (difference 0.0:
  the ``MONAI, cellseg window`` row against ``cellseg, matched``): the floor is the whole difference.
- ``cellseg`` (default) places tiles on a mirror-padded, stride-aligned grid: different windows, and
  border pixels see mirrored context instead of zero padding, so it differs from MONAI by design (most
  at the image borders); it is timed here, not compared for equality.
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

CLASSES = 2
IN_CHANNELS = 1
METHODS = {
    "cellseg": "cellseg",
    "cellseg-matched": "cellseg, matched",
    "monai": "MONAI",
    "monai-window": "MONAI, cellseg window",
}


def _status_mib(key: str) -> float:
    """A size field of /proc/self/status (VmRSS, VmHWM) in MiB; NaN off Linux."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(f"{key}:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("nan")


def _reset_peak_rss() -> bool:
    """Reset the process's peak RSS (VmHWM, ru_maxrss) to its current RSS; False where not allowed."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


def synthetic_image(size: int):
    """A deterministic (1, size, size) float32 image: smooth stripes and blobs plus gaussian noise."""
    import torch

    generator = torch.Generator().manual_seed(0)
    y = torch.arange(size, dtype=torch.float32)[:, None]
    x = torch.arange(size, dtype=torch.float32)[None, :]
    image = torch.randn(size, size, generator=generator).mul_(0.2)
    image += torch.sin(y / 15.0) * torch.cos(x / 21.0)
    image += 0.5 * torch.sin((x + y) / 37.0)
    return image[None]


def build_net(spec: dict):
    import torch

    from cellseg.models import create_model

    torch.manual_seed(0)
    if spec["model"] == "conv":
        return torch.nn.Conv2d(IN_CHANNELS, CLASSES, 3, padding=1).eval()
    net = create_model(spec["arch"], IN_CHANNELS, CLASSES, encoder=spec["encoder"], encoder_weights=None)
    return net.eval()


def measure(spec: dict) -> dict:
    """Run in the child process: build, warm up, predict ``repeats`` times, report one JSON line."""
    import resource

    import numpy as np
    import torch

    from cellseg.inference.blending import predict_tiled
    from cellseg.inference.tiling import TileSettings, blend_window
    from cellseg.models.padding import input_multiple

    if spec["threads"]:
        torch.set_num_threads(spec["threads"])
    device = torch.device(spec["device"])
    method, size, tile = spec["method"], spec["size"], spec["tile"]
    net = build_net(spec).to(device)
    params = sum(p.numel() for p in net.parameters())
    stride = input_multiple(net)
    image = synthetic_image(size)  # on the CPU, as a loaded image is; tiles go to `device`
    passes = 0

    def softmax(tiles: torch.Tensor) -> torch.Tensor:
        nonlocal passes
        passes += tiles.shape[0]
        return net(tiles).float().softmax(dim=1)

    if method.startswith("cellseg"):
        matched = method == "cellseg-matched"
        settings = TileSettings(
            size=tile,
            overlap=spec["overlap"],
            blend=spec["blend"],
            sigma_scale=spec["sigma_scale"],
            batch_size=spec["batch"],
            padding="none" if matched else "mirror",
        )
        multiple = 1 if matched else stride
        # sums (K planes) and weights; tiles are mirror-padded one by one (no padded copy of the image).
        buffers = (CLASSES + 1) * size * size

        def predict(image: torch.Tensor) -> np.ndarray:
            return predict_tiled(softmax, image, settings, device, multiple=multiple)

    else:
        from monai.inferers import sliding_window_inference

        weight_map = None
        if method == "monai-window":
            weight_map = blend_window(tile, tile, spec["blend"], spec["sigma_scale"])
        buffers = (CLASSES + 1) * size * size  # output (K planes) and count map; no copy when size >= tile

        def predict(image: torch.Tensor) -> np.ndarray:
            with torch.inference_mode():
                out = sliding_window_inference(
                    image[None],
                    roi_size=(tile, tile),
                    sw_batch_size=spec["batch"],
                    predictor=softmax,
                    overlap=spec["overlap"],
                    mode=spec["blend"],
                    sigma_scale=spec["sigma_scale"],
                    sw_device=device,
                    device="cpu",
                    roi_weight_map=weight_map,
                )
            return out[0].numpy()

    cuda = device.type == "cuda"
    base_rss = _status_mib("VmRSS")
    peak_reset = _reset_peak_rss()
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base_gpu = torch.cuda.memory_allocated()
    # Warm-up (untimed, but inside the peak): the method on one tile's worth of the image (first-call
    # costs such as lazy imports and window maps), then a full batch of tiles through the network.
    predict(image[:, :tile, :tile].clone())
    with torch.inference_mode():
        net(torch.zeros(spec["batch"], IN_CHANNELS, tile, tile, device=device))
    if cuda:
        torch.cuda.synchronize()
    times, probs = [], None
    for _ in range(spec["repeats"]):
        probs = None  # free the previous output before the next prediction allocates its own
        passes = 0
        start = time.perf_counter()
        probs = predict(image)
        if cuda:
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    peak_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    result = {
        "method": method,
        "blend": spec["blend"],
        "size": size,
        "device": spec["device"],
        "threads": torch.get_num_threads(),
        "params": params,
        "stride": stride,
        "tiles": passes,
        "seconds": min(times),
        "seconds_all": times,
        "tiles_per_s": passes / min(times),
        "buffers_mib": buffers * 4 / 2**20,
        "base_rss_mib": base_rss,
        "peak_rss_mib": peak_rss,
        "peak_delta_mib": peak_rss - base_rss,
        "peak_reset": peak_reset,
    }
    if cuda:
        result["gpu_peak_mib"] = (torch.cuda.max_memory_allocated() - base_gpu) / 2**20
    if spec.get("save"):
        np.save(spec["save"], np.asarray(probs, dtype=np.float32))
    return result


def run_worker(spec: dict) -> dict | None:
    done = subprocess.run(
        [sys.executable, __file__, "--worker", json.dumps(spec)], capture_output=True, text=True
    )
    if done.returncode:
        print(f"{spec['method']} at {spec['size']} px failed:\n{done.stderr[-3000:]}", file=sys.stderr)
        return None
    result = json.loads(done.stdout.strip().splitlines()[-1])
    shown = {k: v for k, v in result.items() if k != "seconds_all"}
    print(json.dumps(shown), file=sys.stderr, flush=True)
    return result


def _mib(value: float) -> str:
    return f"{value:,.0f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu", help="cpu or cuda (tiles run there; blending on the CPU)")
    parser.add_argument("--arch", default="unet")
    parser.add_argument("--encoder", default="resnet34")
    parser.add_argument("--tile", type=int, default=256)
    parser.add_argument("--overlap", type=float, default=0.25)
    parser.add_argument("--sigma-scale", type=float, default=0.125)
    parser.add_argument("--batch", type=int, default=4, help="tiles per network pass (sw_batch_size)")
    parser.add_argument(
        "--compare-size", type=int, default=1024, help="image size of the comparison; 0 skips it"
    )
    parser.add_argument("--blends", nargs="*", default=["gaussian", "constant"])
    parser.add_argument("--repeats", type=int, default=3, help="timed predictions per comparison row")
    parser.add_argument("--sizes", nargs="*", type=int, default=[1024, 4096, 8192], help="memory sweep sizes")
    parser.add_argument("--sweep-model", choices=("conv", "same"), default="conv")
    parser.add_argument(
        "--sweep-repeats",
        type=int,
        help="timed predictions per sweep row (default: 2 with conv, 1 with same)",
    )
    parser.add_argument("--threads", type=int, default=0, help="torch threads in the workers (0: default)")
    parser.add_argument(
        "--quick", action="store_true", help="comparison at 512 px, 1 repeat, sweep 1024 2048"
    )
    parser.add_argument("--json", type=Path, help="also write every figure to this JSON file")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(measure(json.loads(args.worker))))
        return
    if args.sweep_repeats is None:
        args.sweep_repeats = 2 if args.sweep_model == "conv" else 1
    if args.quick:
        args.compare_size, args.repeats, args.sizes = min(args.compare_size, 512), 1, [1024, 2048]

    import monai
    import numpy as np
    import torch

    if args.device.startswith("cuda") and not torch.cuda.is_available():
        parser.error("--device cuda but PyTorch sees no CUDA GPU here")
    common = {
        "device": args.device,
        "arch": args.arch,
        "encoder": args.encoder,
        "tile": args.tile,
        "overlap": args.overlap,
        "sigma_scale": args.sigma_scale,
        "batch": args.batch,
        "threads": args.threads,
    }
    started = time.perf_counter()
    compared: list[dict] = []
    with tempfile.TemporaryDirectory() as scratch:
        for blend in args.blends if args.compare_size else []:
            methods = ["cellseg", "cellseg-matched", "monai"] + (
                ["monai-window"] if blend == "gaussian" else []
            )
            outputs = {}
            for method in methods:
                save = str(Path(scratch) / f"{blend}-{method}.npy")
                spec = {**common, "model": "same", "method": method, "blend": blend}
                spec.update(size=args.compare_size, repeats=args.repeats, save=save)
                result = run_worker(spec)
                if result is not None:
                    compared.append(result)
                    outputs[method] = save
            # Differences of each probability map from MONAI's, and from cellseg's with MONAI's window
            # placement (the latter is 0 for "MONAI, cellseg window": the importance map is the whole
            # difference; see the module docstring).
            for reference, key in (("monai", "vs_monai"), ("cellseg-matched", "vs_matched")):
                if reference not in outputs:
                    continue
                expected = np.load(outputs[reference])
                for result in compared:
                    if result["blend"] == blend:
                        diff = np.abs(np.load(outputs[result["method"]]) - expected)
                        result[f"max_abs_diff_{key}"] = float(diff.max())
                        result[f"mean_abs_diff_{key}"] = float(diff.mean())
    swept: list[dict] = []
    for size in args.sizes:
        for method in ("cellseg", "monai"):
            spec = {**common, "model": args.sweep_model, "method": method, "blend": "gaussian"}
            spec.update(size=size, repeats=args.sweep_repeats)
            result = run_worker(spec)
            if result is not None:
                swept.append(result)
    elapsed = time.perf_counter() - started

    rows = compared + swept
    if not rows:
        sys.exit("Nothing was measured.")
    cuda = args.device.startswith("cuda")
    cpu = platform.processor() or platform.machine()
    gpu = torch.cuda.get_device_name() if cuda else "none"
    model = f"{args.arch} / {args.encoder}, random init, {CLASSES} classes, {IN_CHANNELS} input channel"
    first = rows[0]
    print(
        f"\n{date.today()}, torch {torch.__version__}, MONAI {monai.__version__}, CPU {cpu} x "
        f"{first['threads']} torch threads, device {args.device} (GPU {gpu}); model {model}; "
        f"tile {args.tile}, overlap {args.overlap}, sigma_scale {args.sigma_scale}, batch {args.batch} "
        f"tiles; softmax probabilities, fp32; {elapsed:.0f} s in all\n"
    )
    if not all(r["peak_reset"] for r in rows):
        print("Peak RSS could not be reset (/proc/self/clear_refs): CPU peaks are since process start.\n")
    gpu_head, gpu_rule = (" GPU peak (MiB) |", " ---: |") if cuda else ("", "")
    if compared:
        c = compared[0]
        print(
            f"Comparison: {args.compare_size} x {args.compare_size} image, {c['params'] / 1e6:.1f} M parameters, "
            f"stride {c['stride']}; best of {args.repeats} after a warm-up; differences are of the "
            "probability maps (same blend)\n"
        )
        print(
            "| blend | method | tiles | seconds | tiles/s | peak RSS − before (MiB) |"
            f"{gpu_head} max abs diff vs MONAI | mean abs diff vs MONAI | max abs diff vs cellseg, matched |"
        )
        print(f"| --- | --- | ---: | ---: | ---: | ---: |{gpu_rule} ---: | ---: | ---: |")
        for r in compared:
            gpu_cell = f" {_mib(r['gpu_peak_mib'])} |" if cuda else ""
            diff = " | ".join(
                f"{r[key]:.2e}" if key in r else "n/a"
                for key in ("max_abs_diff_vs_monai", "mean_abs_diff_vs_monai", "max_abs_diff_vs_matched")
            )
            print(
                f"| {r['blend']} | {METHODS[r['method']]} | {r['tiles']:,} | {r['seconds']:.2f} | "
                f"{r['tiles_per_s']:.1f} | {_mib(r['peak_delta_mib'])} |{gpu_cell} {diff} |"
            )
    if swept:
        s = swept[0]
        what = (
            "a single 3x3 convolution instead of the network (the tiling's own cost)"
            if args.sweep_model == "conv"
            else f"the compared network ({s['params'] / 1e6:.1f} M parameters)"
        )
        print(
            f"\nMemory sweep: gaussian blending, {what}; best of {args.sweep_repeats} timed prediction(s); "
            "image-size buffers = the accumulators (K + 1 float32 planes); "
            "the input image itself is allocated before and not counted\n"
        )
        print(
            "| image | method | tiles | seconds | tiles/s | image-size buffers (MiB) | "
            f"peak RSS − before (MiB) | peak RSS (MiB) |{gpu_head}"
        )
        print(f"| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |{gpu_rule}")
        for r in swept:
            gpu_cell = f" {_mib(r['gpu_peak_mib'])} |" if cuda else ""
            print(
                f"| {r['size']} x {r['size']} | {METHODS[r['method']]} | {r['tiles']:,} | "
                f"{r['seconds']:.2f} | {r['tiles_per_s']:.1f} | {_mib(r['buffers_mib'])} | "
                f"{_mib(r['peak_delta_mib'])} | {_mib(r['peak_rss_mib'])} |{gpu_cell}"
            )
    if args.json:
        meta = {
            "date": str(date.today()),
            "torch": torch.__version__,
            "monai": monai.__version__,
            "cpu": cpu,
            "gpu": gpu,
            "seconds_in_all": elapsed,
            **{k: v for k, v in vars(args).items() if k not in ("json", "worker")},
        }
        args.json.write_text(json.dumps({"settings": meta, "comparison": compared, "sweep": swept}, indent=2))


if __name__ == "__main__":
    main()
