"""``python -m cellseg.show <what>``: figures of what training works with, as PNG.

    python -m cellseg.show augment data=isbi data.root=../shared/data/isbi2012 augmentation=elastic
    python -m cellseg.show data data=synthetic
    python -m cellseg.show filters ckpt=outputs/train/<run>/checkpoints/best.ckpt
    python -m cellseg.show activations ckpt=<run>/checkpoints/best.ckpt input=image.tif layers=[up.0,up.3]

``augment``: samples of a split, each whole and then as training epochs draw them (channels, crop,
augmentation), cell outlines on every copy. ``data``: samples and labels per split, intensity histograms,
class balance, cells per image. ``filters``: the first convolution's kernels of a checkpoint.
``activations``: the strongest feature map of chosen layers on an image. The PNG goes to
``outputs/show/<what>.png`` (``output=<file>``; an existing one is refused unless ``overwrite=true``);
``run=<training run folder>`` also logs it to that run's TensorBoard. The figures are made by
:mod:`cellseg.visualisation`; torch is imported only once the command line passed its checks.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Any

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from cellseg.cli import BAD_INPUT, exit_on_bad_input, run_command
from cellseg.config import config_dir
from cellseg.errors import CellsegError
from cellseg.visualisation.request import check_request, plain_list, with_target_key

log = logging.getLogger(__name__)


def _choice(group: str, default: str) -> str:
    """The option of a config group this run composed (``elastic`` for augmentation=elastic)."""
    if HydraConfig.initialized():
        return str(HydraConfig.get().runtime.choices.get(group, default))
    return default


def _data_figure(cfg: DictConfig, what: str) -> Any:
    from cellseg.build import build_datamodule
    from cellseg.visualisation.augment import augment_figure
    from cellseg.visualisation.data_overview import data_figure

    datamodule = build_datamodule(cfg)
    data = f"data={_choice('data', type(datamodule).__name__)}, channels={_choice('channels', '?')}"
    if what == "augment":
        title = f"augmentation={_choice('augmentation', '?')}, {data}"
        return augment_figure(
            datamodule,
            cfg.split,
            cfg.samples,
            cfg.copies,
            cfg.seed,
            plain_list(cfg.indices),
            cfg.panel,
            title,
        )
    title = f"{data}, target={_choice('target', '?')}"
    return data_figure(datamodule, cfg.samples, cfg.seed, cfg.stats_images, cfg.panel, title)


def _model_figure(cfg: DictConfig, what: str) -> tuple[Any, int]:
    from cellseg.inference.checkpoint import load_model
    from cellseg.visualisation import activations
    from cellseg.visualisation.filters import filters_figure
    from cellseg.visualisation.samples import input_names

    model = load_model(cfg.ckpt, device="cpu")
    title = f"{Path(str(cfg.ckpt)).name} (epoch {model.epoch}, {model.hparams['model'].get('arch')})"
    if what == "filters":
        names = input_names(model.pipeline["channels"])
        return filters_figure(model.net, names, cfg.panel, title), model.global_step
    layers = plain_list(cfg.layers)
    layers = (
        activations.check_layers(model.net, layers)
        if layers is not None
        else activations.default_layers(model.net, model.in_channels)
    )
    image = activations.read_input(cfg.input, model.pipeline, cfg.input_index)
    log.info("Running %s on %s: layers %s", model.path.name, cfg.input, ", ".join(layers))
    maps = activations.strongest_maps(model.net, image, layers, cfg.progress)
    name = f"{Path(str(cfg.input)).name}[{cfg.input_index}], {image.shape[1]}x{image.shape[2]}"
    return activations.activations_figure(image, maps, name, cfg.panel, title), model.global_step


def show(cfg: DictConfig) -> Path:
    """Check the request, draw the figure, write it (and log it to the run's TensorBoard); returns the PNG."""
    request = check_request(cfg)
    from cellseg.visualisation.figures import log_to_tensorboard, save_png

    if request.what in ("augment", "data"):
        figure, step = _data_figure(cfg, request.what), 0
    else:
        figure, step = _model_figure(cfg, request.what)
    save_png(figure, request.output)
    width, height = (round(v) for v in figure.get_size_inches() * figure.dpi)
    log.info("Wrote %s (%d x %d px)", request.output, width, height)
    if request.run is not None:
        folder = log_to_tensorboard(figure, request.run, f"show/{request.what}", step)
        log.info("Logged it to TensorBoard as show/%s in %s", request.what, folder)
    return request.output


def check_before_start(job: DictConfig) -> None:
    """Target, options, checkpoint, input file, output file and run folder, before anything is read."""
    check_request(job)


@hydra.main(version_base="1.3", config_path=str(config_dir()), config_name="show")
def _hydra_main(cfg: DictConfig) -> None:
    exit_on_bad_input(show)(cfg)


def main() -> None:
    try:
        sys.argv[1:] = with_target_key(sys.argv[1:])
    except CellsegError as error:
        print(f"cellseg: error: {error}", file=sys.stderr)
        sys.exit(BAD_INPUT)
    run_command("show", _hydra_main, job_checks=(check_before_start,))


if __name__ == "__main__":
    main()
