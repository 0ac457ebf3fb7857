"""``python -m cellseg.stats``: per-layer statistics of a model (seed 000's ``model_stats``; the table is
defined in :mod:`cellseg.models.stats`).

    python -m cellseg.stats model=deconvnet input_shape=[3,320,320]

prints the table and writes it as ``stats_<C>x<H>x<W>.csv`` and ``.md`` to ``outputs/stats/<model.arch>/``
(``hydra.run.dir=...`` moves it; a second run with the same model and input overwrites them). Any training override works
(``channels=brightfield``, ``model.encoder=resnet18``, ...); without ``input_shape`` the input is the
channel strategy's channel count at the training crop size.
"""

from __future__ import annotations

from pathlib import Path

import hydra
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from rich.console import Console

from cellseg.cli import exit_on_bad_input, run_command
from cellseg.config import config_dir
from cellseg.errors import ConfigError
from cellseg.models import create_model
from cellseg.models.encoders import unwrap
from cellseg.models.stats import ModelStats, model_stats


def _input_shape(cfg: DictConfig, in_channels: int) -> list[int]:
    shape = cfg.get("input_shape")
    if shape is None:
        size = int(cfg.data.get("crop_size") or cfg.data.get("size"))
        return [in_channels, size, size]
    shape = list(OmegaConf.to_container(shape) if OmegaConf.is_list(shape) else shape)
    if len(shape) != 3 or not all(isinstance(s, int) and s > 0 for s in shape):
        raise ConfigError(
            f"input_shape must be [C,H,W] with positive integers, e.g. [3,256,256]; got {shape}."
        )
    return shape


def run_stats(cfg: DictConfig, output_dir: Path | None = None, console: Console | None = None) -> ModelStats:
    """Build ``cfg.model`` as training would, tabulate it at ``input_shape``, print and write the table."""
    # The same parts training sizes its model from: channels give in_channels, the target the classes.
    channels = instantiate(cfg.channels, _convert_="all")
    target = instantiate(cfg.target, _convert_="all")
    shape = _input_shape(cfg, channels.num_channels)
    model_options = OmegaConf.to_container(cfg.model, resolve=True)
    net = create_model(in_channels=shape[0], classes=target.outputs.num_channels, **model_options)
    stats = model_stats(net, shape)
    title = f"{cfg.model.arch} ({type(unwrap(net)).__name__}), input {' x '.join(map(str, shape))}"
    console = console or Console()
    console.print(stats.rich_table(title))
    console.print(stats.summary())
    if output_dir is not None:
        stem = output_dir / f"stats_{'x'.join(map(str, shape))}"
        stats.write(stem, title)
        console.print(f"written: {stem}.csv and {stem}.md")
    return stats


@hydra.main(version_base="1.3", config_path=str(config_dir()), config_name="stats")
def _hydra_main(cfg: DictConfig) -> None:
    exit_on_bad_input(run_stats)(cfg, Path(cfg.paths.run_dir))


def main() -> None:
    run_command("stats", _hydra_main)


if __name__ == "__main__":
    main()
