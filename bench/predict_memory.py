"""Peak memory of predicting one large image, file to file: streamed (cellseg.predict) against held whole.

    python bench/predict_memory.py                                  # conv network, 4096 8192 16384 32768 px
    python bench/predict_memory.py --network unet --sizes 8192 --modes streamed   # the U-Net goal figure

Each measurement runs in a fresh process (this script with ``--worker``), whose peak resident set size
(``VmHWM``: imports, model and prediction, what a user's machine has to hold) is reported, and the
peak while predicting above the resident size just before (the peak reset through
``/proc/self/clear_refs``, as bench/inference.py does), with the seconds it took. The input is a square uint8 uncompressed TIFF (smooth blobs plus
noise, written band by band, never whole), the model randomly initialised, 1 channel, 2 classes, saved
as a cellseg checkpoint; both modes write a mask and a foreground probability TIFF with the same tiles
(512 px, overlap 0.25, gaussian blending, batch 4, CPU, fp32):

- ``streamed``: ``predict_files``, the engine of ``python -m cellseg.predict``: the file read a region at
  a time, normalisation ranges from a sample, results written block by block;
- ``whole``: what predict did before it streamed: the file decoded whole, normalised whole,
  ``Predictor.outputs`` (whole-image accumulators), the class map and probability made whole and written.

``--network conv`` swaps the network for one 3x3 convolution so that 32768 px (7,225 tiles) takes a
minute or two and the figures are the pipeline's own; ``--network unet`` is ``model=unet`` (smp U-Net,
ResNet34), about 1 s per tile on one core. ``whole`` is skipped above ``--whole-max`` px (at 32768 px it
needs over 20 GiB). The issue's goals: streamed under 2 GiB at 8192 px with the U-Net, and growing by
less than 10 % from 8192 to 32768 px.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
TILE = {"size": 512, "overlap": 0.25, "blend": "gaussian", "batch_size": 4}


def write_image(path: Path, size: int, band: int = 1024) -> None:
    """A size x size uint8 TIFF of smooth blobs and noise, written a band of rows at a time."""
    from cellseg.inference.writers import StreamedTiff

    tiff = StreamedTiff(path, (size, size), np.uint8)
    rng = np.random.default_rng(0)
    x = np.arange(size, dtype=np.float32)
    for top in range(0, size, band):
        y = np.arange(top, min(top + band, size), dtype=np.float32)[:, None]
        blobs = 100 + 60 * np.sin(y / 37.0) * np.cos(x / 23.0)
        noise = rng.normal(0, 20, blobs.shape)
        tiff.write((slice(top, top + len(y)), slice(None)), np.clip(blobs + noise, 0, 255).astype(np.uint8))


def write_unet_checkpoint(path: Path) -> None:
    import yaml

    sys.path.insert(0, str(ROOT))
    from tests.inference_helpers import write_checkpoint

    model = yaml.safe_load((ROOT / "conf" / "model" / "unet.yaml").read_text())
    write_checkpoint(path, model=model)


def worker(args: argparse.Namespace) -> None:
    """One prediction in this process; prints its peak RSS and seconds as JSON."""
    import torch

    from cellseg.data.io import read_planes
    from cellseg.inference import Predictor, TileSettings, load_model
    from cellseg.inference.decode import class_map, encode_mask, foreground_probability
    from cellseg.inference.results import OutputOptions, predict_files
    from cellseg.inference.writers import write_tiff

    torch.set_num_threads(args.threads)
    model = load_model(args.ckpt)
    if args.network == "conv":
        model.net = torch.nn.Conv2d(1, 2, 3, padding=1).eval()
    predictor = Predictor(model, tiles=TileSettings(**TILE), device="cpu")
    options = OutputOptions.checked(["mask", "probability"], "tif", None, "foreground", predictor.class_names)
    before = _status_mib("VmRSS")
    load_peak = _status_mib("VmHWM")
    reset = _reset_peak()
    started = time.perf_counter()
    if args.mode == "streamed":
        predict_files(predictor, [args.image], args.out, options, progress=False)
    else:
        image = read_planes(args.image)
        probabilities = predictor.probabilities(image)
        del image
        write_tiff(
            args.out / "masks" / "image.tif", encode_mask(class_map(probabilities), options.mask_values)
        )
        write_tiff(args.out / "probabilities" / "image.tif", foreground_probability(probabilities))
    seconds = time.perf_counter() - started
    peak = _status_mib("VmHWM")
    result = {
        "peak_rss_mib": round(max(peak, load_peak), 1),
        "predict_mib": round(peak - before, 1) if reset else float("nan"),
        "seconds": round(seconds, 1),
    }
    print(json.dumps(result))


def _status_mib(key: str) -> float:
    """``VmRSS`` or ``VmHWM`` (the peak since start or since the last reset) of this process, in MiB. Not
    ``ru_maxrss``: Linux carries that over from the process image before ``exec``, i.e. from this
    script's parent at the moment it started the worker, which made the figures grow with the image
    the parent had just written."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(f"{key}:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _reset_peak() -> bool:
    """Resets ``VmHWM`` to the current RSS (Linux >= 4.0), so the peak after it is prediction's own."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def measure(args: argparse.Namespace, mode: str, image: Path, ckpt: Path, out: Path) -> dict:
    command = [sys.executable, __file__, "--worker", "--mode", mode, "--network", args.network]
    command += ["--image", str(image), "--ckpt", str(ckpt), "--out", str(out), "--threads", str(args.threads)]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True, cwd=ROOT)
    output = process.stdout.read() if process.stdout else ""
    if process.wait() != 0:
        return {"error": f"exit {process.returncode}", "peak_rss_mib": float("nan")}
    return json.loads(output.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--network", choices=("conv", "unet"), default="conv")
    parser.add_argument("--sizes", type=int, nargs="+", default=[4096, 8192, 16384, 32768])
    parser.add_argument("--modes", nargs="+", choices=("streamed", "whole"), default=["streamed", "whole"])
    parser.add_argument("--whole-max", type=int, default=16384)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument(
        "--scratch", type=Path, default=None, help="folder for the images (default: a temp dir)"
    )
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--mode", default="streamed", help=argparse.SUPPRESS)
    parser.add_argument("--image", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--ckpt", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args)
        return
    print(
        f"# {platform.node()} {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
        f"load {os.getloadavg()[0]:.1f}; network {args.network}, {args.threads} thread(s), tiles {TILE}"
    )
    print(f"{'size':>6} {'mode':>9} {'peak RSS MiB':>13} {'predicting MiB':>15} {'seconds':>8}")
    results: dict[tuple[int, str], dict] = {}
    with tempfile.TemporaryDirectory(dir=args.scratch) as scratch:
        folder = Path(scratch)
        ckpt = folder / "model.ckpt"
        write_unet_checkpoint(ckpt)
        for size in args.sizes:
            image = folder / f"image_{size}.tif"
            write_image(image, size)
            for mode in args.modes:
                if mode == "whole" and size > args.whole_max:
                    continue
                out = folder / f"out_{size}_{mode}"
                result = results[(size, mode)] = measure(args, mode, image, ckpt, out)
                print(
                    f"{size:>6} {mode:>9} {result['peak_rss_mib']:>13.0f} {result.get('predict_mib', float('nan')):>15.0f}"
                    f" {result.get('seconds', float('nan')):>8.1f}"
                    + (f"  {result['error']}" if "error" in result else ""),
                    flush=True,
                )
                subprocess.run(["rm", "-rf", str(out)], check=True)
            image.unlink()
    for size in args.sizes:
        streamed, whole = results.get((size, "streamed")), results.get((size, "whole"))
        if streamed and whole and "error" not in streamed and "error" not in whole:
            ratio = streamed["peak_rss_mib"] / whole["peak_rss_mib"]
            own = streamed["predict_mib"] / whole["predict_mib"]
            print(f"{size} px: streamed / whole: peak {ratio:.2f}, while predicting {own:.2f}")
    streamed_sizes = [s for s in args.sizes if "error" not in results.get((s, "streamed"), {"error": 1})]
    if len(streamed_sizes) > 1:
        first, last = streamed_sizes[0], streamed_sizes[-1]
        small, large = results[(first, "streamed")], results[(last, "streamed")]
        growth = large["peak_rss_mib"] / small["peak_rss_mib"] - 1
        own = large["predict_mib"] - small["predict_mib"]
        print(f"streamed {first} -> {last} px: peak {100 * growth:+.1f} %, while predicting {own:+.0f} MiB")


if __name__ == "__main__":
    main()
