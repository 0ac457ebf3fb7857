"""What ``python -m cellseg.show`` is asked for, checked before any data is read or any network is run.

The first word of the command line names the figure (``python -m cellseg.show augment ...``); Hydra knows
only ``key=value`` overrides, so it becomes ``what=augment`` before Hydra sees it. Everything else is a
key of ``conf/show.yaml`` or a training override. This module imports no torch at load time: a typo is
reported in half a second, not after the ten it takes to import torch and Lightning.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf
from omegaconf.errors import InterpolationResolutionError

from cellseg.errors import ConfigError, DataError, OutputDirError, RunExistsError
from cellseg.runs import check_writable, is_training_run

#: The figures, and what each shows (the order of the help text and of error messages).
TARGETS: dict[str, str] = {
    "augment": "training samples through the configured augmentation, each as several epochs draw it",
    "data": "samples and labels per split, intensity histograms, class balance and cell counts",
    "filters": "the first convolution's filters of a checkpoint (ckpt=...)",
    "activations": "the strongest feature map of chosen layers on an image (ckpt=... input=...)",
}
#: The keys each figure needs beyond the training config.
NEEDS: dict[str, tuple[str, ...]] = {"filters": ("ckpt",), "activations": ("ckpt", "input")}
SPLITS = ("train", "val", "test")
KEY = "what"
#: The output of a request checked before Hydra runs the job, when it names Hydra's runtime values.
DEFERRED = "<resolved when the job runs>"
USAGE = f"python -m cellseg.show <{'|'.join(TARGETS)}> [key=value ...]"


def _suggest(name: str, valid: Sequence[str]) -> str:
    close = difflib.get_close_matches(name, valid, n=1)
    return f" Did you mean '{close[0]}'?" if close else ""


def check_target(what: Any) -> str:
    """The figure's name, or a ConfigError listing the valid ones."""
    if what is None or not str(what).strip():
        raise ConfigError(
            f"Say what to show: python -m cellseg.show <target> [key=value ...], with <target> one of "
            f"{', '.join(TARGETS)}."
        )
    what = str(what)
    if what not in TARGETS:
        raise ConfigError(
            f"Unknown show target '{what}'. Valid targets: {', '.join(TARGETS)}.{_suggest(what, list(TARGETS))}"
        )
    return what


#: Hydra's flags that take the next word as their value.
_FLAGS_WITH_VALUE = {"--cfg", "-c", "--package", "-p", "--config-path", "-cp", "--config-name", "-cn"}
_FLAGS_WITH_VALUE |= {"--config-dir", "-cd", "--experimental-rerun"}


def with_target_key(args: Sequence[str]) -> list[str]:
    """The command line with its target word (``augment``) written as the override ``what=augment`` at its end.

    A word is the target when it is neither a flag, nor a flag's value, nor an override (``key=value``,
    ``~key``). Two target words, or a word and ``what=...``, are an error; an unknown word lists the targets.
    """
    args = list(args)
    words = []
    for index, arg in enumerate(args):
        after_flag = index > 0 and args[index - 1] in _FLAGS_WITH_VALUE
        if not arg.startswith(("-", "~", "+")) and "=" not in arg and not after_flag:
            words.append(index)
    given = [a for a in args if a.lstrip("+").split("=", 1)[0] == KEY]
    if len(words) + len(given) > 1:
        shown = [args[i] for i in words] + given
        raise ConfigError(f"python -m cellseg.show takes one target, got {' and '.join(shown)}: {USAGE}.")
    if words:  # moved to the end: argparse takes the overrides as one run of words after any flag (-m)
        target = check_target(args.pop(words[0]))
        args.append(f"{KEY}={target}")
    return args


@dataclass(frozen=True)
class ShowRequest:
    """A checked request: which figure, where its PNG goes, and the run whose TensorBoard also gets it."""

    what: str
    output: Path
    run: Path | None


def _positive_int(cfg: Mapping[str, Any], key: str, minimum: int = 1) -> None:
    value = cfg.get(key)
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise ConfigError(f"{key}={value}: expected a whole number >= {minimum}.")


def _check_options(cfg: Mapping[str, Any]) -> None:
    for key, minimum in (("samples", 1), ("copies", 1), ("panel", 32), ("input_index", 0)):
        _positive_int(cfg, key, minimum)
    if cfg.get("stats_images") is not None:
        _positive_int(cfg, "stats_images")
    if cfg.get("split") not in SPLITS:
        raise ConfigError(f"split={cfg.get('split')}: expected one of {', '.join(SPLITS)}.")
    indices = plain_list(cfg.get("indices"))
    if indices is not None and not all(
        isinstance(i, int) and not isinstance(i, bool) and i >= 0 for i in indices
    ):
        raise ConfigError(f"indices={indices}: expected a list of image numbers >= 0, e.g. indices=[0,3].")
    layers = plain_list(cfg.get("layers"))
    if layers is not None and (not layers or not all(isinstance(name, str) for name in layers)):
        raise ConfigError(f"layers={layers}: expected a list of layer names, e.g. layers=[decoder.blocks.0].")


def plain_list(value: Any) -> list[Any] | None:
    """A list option as a plain list (one value given alone counts as a list of one); None stays None."""
    if value is None:
        return None
    if OmegaConf.is_list(value):
        return list(OmegaConf.to_container(value))
    return list(value) if isinstance(value, list | tuple) else [value]


def _check_needs(what: str, cfg: Mapping[str, Any]) -> None:
    for key in NEEDS.get(what, ()):
        if cfg.get(key) is None or not str(cfg.get(key)).strip():
            example = "<run>/checkpoints/best.ckpt" if key == "ckpt" else "<image file>"
            raise ConfigError(
                f"show {what} needs {key}=...: e.g. python -m cellseg.show {what} {key}={example}."
            )


def check_input(path: str | Path, channels: int, index: int) -> Path:
    """The image file ``activations`` reads: it must exist and hold image ``index`` of ``channels`` planes."""
    from cellseg.data.io import probe_planes
    from cellseg.inference.inputs import images_in_file

    path = Path(path).expanduser()
    if not path.is_file():
        raise DataError(f"input '{path}' is not a file; give one image file, e.g. input=images/field0.tif.")
    count = images_in_file(probe_planes(path)[0], channels, "auto", path)
    if index >= count:
        raise ConfigError(f"input_index={index}: '{path}' holds {count} image(s) (0-based numbers).")
    return path


def check_output(output: Any, overwrite: bool) -> Path:
    """The PNG to write: a .png path that is new (unless ``overwrite``) and in a writable folder."""
    path = Path(str(output)).expanduser()
    if path.suffix.lower() != ".png":
        raise ConfigError(
            f"output '{path}' must be a .png file, e.g. output=figures/{path.stem or 'show'}.png."
        )
    if path.is_dir():
        raise OutputDirError(f"output '{path}' is a folder; give a .png file name.")
    if path.exists() and not overwrite:
        raise RunExistsError(
            f"output '{path}' already exists; pass overwrite=true to replace it, or output=<file>."
        )
    check_writable(path.parent, f"'{path.name}' to", "Choose output=<file>.")
    return path


def check_run(run: Any) -> Path | None:
    """The training run folder whose TensorBoard also gets the figure (None: none)."""
    if run is None:
        return None
    folder = Path(str(run)).expanduser()
    if not is_training_run(folder):
        raise ConfigError(
            f"run '{folder}' is not a training run folder (no metrics.json or checkpoints/); give the folder "
            "of a run, e.g. run=outputs/train/<date>_<time>."
        )
    check_writable(folder / "tensorboard", "TensorBoard images to", "Give a run folder you may write to.")
    return folder


def check_request(cfg: Mapping[str, Any]) -> ShowRequest:
    """Every check that needs neither the data nor the network's weights; the checkpoint is read (memory
    mapped, milliseconds) to know it is a cellseg one and how many channels its input has."""
    what = check_target(cfg.get(KEY))
    _check_options(cfg)
    _check_needs(what, cfg)
    if "ckpt" in NEEDS.get(what, ()):
        from cellseg.inference.checkpoint import read_checkpoint

        hparams = read_checkpoint(cfg["ckpt"])["hyper_parameters"]
        if what == "activations":
            channels = len(hparams["pipeline"]["channel_names"])
            check_input(cfg["input"], channels, int(cfg["input_index"]))
    try:
        output = check_output(cfg.get("output"), bool(cfg.get("overwrite")))
    except InterpolationResolutionError:
        # output='figures/${hydra:runtime.choices.augmentation}.png' resolves only inside a job Hydra runs,
        # not in the check before it starts: checked there (this request is then only the early check's).
        output = Path(DEFERRED)
    return ShowRequest(what, output, check_run(cfg.get("run")))
