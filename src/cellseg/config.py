"""Where the Hydra config tree lives, and command-line checks that run before Hydra composes anything.

Hydra already rejects unknown options and keys, but its messages do not list what *is* valid. The
checks here turn ``model=unett`` or ``optimizer.lrr=1e-3`` into one line that names the bad name and
the valid choices or keys, before any data is generated or any directory is written.
"""

from __future__ import annotations

import difflib
import importlib.util
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import Override, ValueType
from hydra.errors import OverrideParseException
from omegaconf import DictConfig, ListConfig, OmegaConf

from cellseg.errors import ConfigError
from cellseg.runs import check_writable, run_dir_of

PRIMARY_CONFIG = "train"


def eval_dir(ckpt: str) -> str:
    """Where evaluations of a checkpoint go: ``<run>/eval/<checkpoint name>`` (next to its run)."""
    return str(run_dir_of(str(ckpt)) / "eval" / Path(str(ckpt)).stem)


# Used by conf/evaluate.yaml's run directory; registered on import, before Hydra composes anything.
OmegaConf.register_new_resolver("cellseg_eval_dir", eval_dir, replace=True)


def config_dir() -> Path:
    """The config tree: ``cellseg/conf`` inside an installed wheel, else ``conf/`` at the repository top."""
    package_dir = Path(__file__).resolve().parent
    for candidate in (package_dir / "conf", package_dir.parents[1] / "conf"):
        if (candidate / f"{PRIMARY_CONFIG}.yaml").is_file():
            return candidate
    raise FileNotFoundError(
        f"cellseg's config tree was not found next to the package ({package_dir / 'conf'}) nor at the "
        f"repository top ({package_dir.parents[1] / 'conf'}); reinstall cellseg."
    )


def group_options(group: str, root: Path | None = None) -> list[str]:
    """The option names of a config group (its YAML files), e.g. ``['adam', 'adamw', 'sgd']``."""
    folder = (root or config_dir()) / group
    return sorted(p.stem for p in folder.glob("*.yaml"))


def config_groups(root: Path | None = None) -> list[str]:
    """Top-level config groups (folders of the config tree), except Hydra's own settings."""
    root = root or config_dir()
    return sorted(p.name for p in root.iterdir() if p.is_dir() and p.name != "hydra")


def _suggest(name: str, valid: Sequence[str]) -> str:
    close = difflib.get_close_matches(name, valid, n=1)
    return f" Did you mean '{close[0]}'?" if close else ""


def _values(override: Override) -> list[str]:
    """Every concrete value of an override: one for a plain override, each element of a sweep."""
    if override.value_type in (ValueType.GLOB_CHOICE_SWEEP, ValueType.INTERVAL_SWEEP):
        return []  # glob(...) selects existing files only; interval(...) is a sweeper's to sample
    if override.is_sweep_override():
        return [str(v) for v in override.sweep_string_iterator()]
    return [override.get_value_element_as_str()]


def check_group_choice(group: str, choice: str, root: Path | None = None) -> None:
    """Raise ConfigError when ``group=choice`` names no file of that group."""
    valid = group_options(group, root)
    if choice not in valid and choice != "null":
        raise ConfigError(
            f"Unknown option '{choice}' for config group '{group}'. "
            f"Valid choices: {', '.join(valid)}.{_suggest(choice, valid)}"
        )


def check_key(cfg: DictConfig, key: str) -> None:
    """Raise ConfigError when the dotted ``key`` does not exist in the composed config."""
    node: object = cfg
    walked: list[str] = []
    for part in key.split("."):
        if isinstance(node, DictConfig):
            if part not in node.keys():  # noqa: SIM118 - "in" is False for a mandatory (???) value
                where = ".".join(walked) or "the top level"
                hidden = {"hydra"} if not walked else set()
                valid = sorted(str(k) for k in node if not str(k).startswith("_") and str(k) not in hidden)
                raise ConfigError(
                    f"Unknown config key '{key}': '{part}' is not a key of {where}. "
                    f"Valid keys there: {', '.join(valid)}.{_suggest(part, valid)} "
                    f"(to add a new key on purpose, write +{key}=...)"
                )
            node = node._get_node(part)
        elif isinstance(node, ListConfig) and part.isdigit():
            if int(part) >= len(node):
                raise ConfigError(f"Config key '{key}': index {part} is out of range (length {len(node)}).")
            node = node._get_node(int(part))
        else:
            raise ConfigError(f"Config key '{key}': '{'.'.join(walked)}' has no key '{part}'.")
        walked.append(part)


#: Choices that need the optional ``sweep`` extra: (group, choice or None for all) -> the plugin needed.
EXTRA_CHOICES: dict[tuple[str, str | None], str] = {
    ("hydra/sweeper", "optuna"): "hydra_plugins.hydra_optuna_sweeper",
    ("hydra/launcher", "slurm"): "hydra_plugins.hydra_submitit_launcher",
    ("hydra/launcher", "slurm_local"): "hydra_plugins.hydra_submitit_launcher",
    ("hparams_search", None): "hydra_plugins.hydra_optuna_sweeper",  # every search there is an Optuna one
}
EXTRA_GROUPS = {group for group, _ in EXTRA_CHOICES}


def check_extra_installed(group: str, choice: str) -> None:
    """Raise ConfigError, naming the extra to install, when ``group=choice`` needs a plugin that is absent."""
    plugin = EXTRA_CHOICES.get((group, choice)) or (
        EXTRA_CHOICES.get((group, None)) if choice != "null" else None
    )
    if plugin is not None and importlib.util.find_spec(plugin) is None:
        package = plugin.removeprefix("hydra_plugins.").replace("_", "-")
        raise ConfigError(
            f"{group}={choice} needs {package}, in cellseg's 'sweep' extra: "
            "pip install -c constraints.txt -e '.[sweep]' in a clone (pip install 'cellseg[sweep]' otherwise)."
        )


#: Number-valued keys that also take words: ``None`` means any word (Lightning checks those itself).
WORD_VALUES: dict[str, tuple[str, ...] | None] = {
    "optimizer.lr": ("auto",),
    "data.num_workers": ("auto",),
    "trainer.precision": None,
    "trainer.devices": None,
}


def _typed_values(override: Override) -> list[Any]:
    """The override's values as Hydra parsed them (int, float, bool, str, list, ...); [] for an interval."""
    if not override.is_sweep_override():
        return [override.value()]
    if override.value_type in (ValueType.SIMPLE_CHOICE_SWEEP, ValueType.RANGE_SWEEP):
        return list(override.sweep_iterator())
    return []  # interval(...) sweeps: numbers by construction; the sweeper samples them


def is_number(value: Any) -> bool:
    """An int or float, not a bool (which Python counts as an int)."""
    return isinstance(value, int | float) and not isinstance(value, bool)


#: What a value must be to replace a default of each kind: its name in messages, and the test.
_KINDS: tuple[tuple[type | tuple[type, ...], str, Callable[[Any], bool]], ...] = (
    (bool, "true or false", lambda v: isinstance(v, bool)),
    ((int, float), "a number", is_number),
    ((list, ListConfig), "a list such as [1,2]", lambda v: isinstance(v, list)),
    ((dict, DictConfig), "a mapping such as {a:1}", lambda v: isinstance(v, dict)),
)


def _expected_kind(default: Any) -> tuple[str, Callable[[Any], bool]] | None:
    """The kind of value that may replace ``default``; None for strings and nulls, whose readers check them."""
    return next(((name, fits) for kind, name, fits in _KINDS if isinstance(default, kind)), None)


def check_value_types(cfg: DictConfig, override: Override) -> None:
    """Raise ConfigError when an override's value is not of the kind its default is (``seed=abc``).

    The default is the composed config's value of the key; interpolated and string-valued keys are
    left to the code that reads them, and keys listed in WORD_VALUES may also take those words.
    """
    key = override.key_or_group
    parent_key, _, leaf = key.rpartition(".")
    parent = OmegaConf.select(cfg, parent_key, throw_on_resolution_failure=False) if parent_key else cfg
    if isinstance(parent, ListConfig) and leaf.isdigit() and int(leaf) < len(parent):
        node = parent._get_node(int(leaf))
    elif isinstance(parent, DictConfig) and leaf in parent.keys():  # noqa: SIM118 - see check_key
        node = parent._get_node(leaf)
    else:
        return
    if node is None or node._is_interpolation() or node._is_missing():
        return
    default = node._value()
    expected = _expected_kind(default)
    words = WORD_VALUES.get(key, ())
    if expected is None or words is None:
        return
    name, fits = expected
    for value in _typed_values(override):
        if value is not None and not fits(value) and value not in words:
            also = f" (or {', '.join(words)})" if words else ""
            raise ConfigError(
                f"{key}={_yaml(value)}: expected {name}{also}, like its default {key}={_yaml(default)}."
            )


def _yaml(value: Any) -> str:
    """A value as it is written on the command line (true, null, 'abc' stays abc)."""
    if isinstance(value, ListConfig | DictConfig):
        value = OmegaConf.to_container(value)
    return OmegaConf.to_yaml({"v": value}).strip()[3:].replace("\n", " ")


def _single_run(override: Override) -> str | None:
    """The override as one plain ``key=value`` (a sweep's first value), for composing one job's config."""
    if override.is_delete() or not override.is_sweep_override():
        return override.input_line
    values = _values(override)
    return f"{override.get_key_element()}={values[0]}" if values else None


def _missing_paths(node: Any, prefix: str = "") -> list[str]:
    """Dotted paths of the ``???`` (mandatory, not given) values in a plain config container."""
    if isinstance(node, dict):
        return [p for k, v in node.items() for p in _missing_paths(v, f"{prefix}{k}.")]
    if isinstance(node, list):
        return [p for i, v in enumerate(node) for p in _missing_paths(v, f"{prefix}{i}.")]
    return [prefix.rstrip(".")] if node == "???" else []


def check_required_values(cfg: DictConfig) -> None:
    """Fail when a mandatory value (``???`` in the YAML, such as ``data.root``) was not given."""
    container = OmegaConf.to_container(cfg, resolve=False)
    container.pop("hydra", None)
    missing = sorted(_missing_paths(container))
    if missing:
        raise ConfigError(
            f"Missing value for {', '.join(missing)}: set it on the command line, e.g. {missing[0]}=<value>."
        )


def check_command_line(
    args: Sequence[str],
    root: Path | None = None,
    config_name: str = PRIMARY_CONFIG,
    job_checks: Sequence[Callable[[DictConfig], None]] = (),
) -> DictConfig | None:
    """Check a ``cellseg.train`` command line against the config tree before Hydra starts the run;
    returns the composed config of the (first) job, or None where no job would run (``--cfg``, help).

    ``config_name`` is the primary config the command composes (``stats`` for ``cellseg.stats``);
    ``job_checks`` are the command's own checks of the composed job config (e.g. that predict's
    output folder holds no earlier results), run before Hydra writes anything.

    Group choices are checked against the files of each group (every value of a sweep); plain keys
    against the config composed for the first job; the output folder must be writable.
    ``+key``/``++key``/``~key`` and ``hydra.*`` overrides are Hydra's to judge.
    """
    from hydra._internal.utils import get_args_parser
    from hydra.core.utils import setup_globals

    root = root or config_dir()
    try:
        parsed = get_args_parser().parse_args(list(args))
    except SystemExit:
        return None  # malformed flags: Hydra reports those itself
    if parsed.config_name or parsed.config_dir or parsed.config_path or parsed.help or parsed.hydra_help:
        return None  # another primary config or search path, or a help request: Hydra's business
    try:
        overrides = OverridesParser.create().parse_overrides(parsed.overrides)
    except OverrideParseException:
        return None  # a syntax error: Hydra's own message points at the offending character
    groups = set(config_groups(root))
    key_overrides: list[Override] = []
    for override in overrides:
        key = override.key_or_group
        for choice in _values(override) if key in EXTRA_GROUPS and not override.is_delete() else ():
            check_extra_installed(key, choice)
        if override.package or key.startswith("hydra") or override.is_add() or override.is_delete():
            continue
        if override.is_force_add() or "/" in key:
            continue  # nested group choices such as hydra/launcher=...: Hydra checks those itself
        if key in groups:
            for choice in _values(override):
                check_group_choice(key, choice, root)
        else:
            key_overrides.append(override)
    setup_globals()
    plain_keys = {id(o) for o in key_overrides}
    structure = [line for o in overrides if id(o) not in plain_keys and (line := _single_run(o)) is not None]
    cfg = _compose(root, structure, config_name)
    if cfg is None:
        return None  # a composition problem of another kind: Hydra reports it in its own words
    OmegaConf.set_struct(cfg, False)
    for override in key_overrides:
        check_key(cfg, override.key_or_group)
        check_value_types(cfg, override)
    if parsed.cfg is not None or parsed.info:
        return None
    job = _compose(root, [line for line in map(_single_run, overrides) if line is not None], config_name)
    if job is not None:
        check_required_values(job)
        check_writable(
            OmegaConf.select(job, "hydra.sweep.dir" if parsed.multirun else "hydra.run.dir"), "runs to"
        )
        for check in job_checks:
            check(job)
    return job


def check_cluster_trainer(job: DictConfig) -> None:
    """A SLURM job of several tasks (one per GPU, or several nodes) trains only with DDP across them;
    checked on the login node, before anything is queued."""
    launcher = OmegaConf.select(job, "hydra.launcher", default=None)
    if launcher is None or not str(launcher.get("_target_")).startswith("hydra_plugins.cellseg_plugins"):
        return
    tasks, nodes = launcher.get("tasks_per_node") or 1, launcher.get("nodes") or 1
    if (tasks > 1 or nodes > 1) and "ddp" not in str(job.trainer.get("strategy")):
        raise ConfigError(
            f"hydra.launcher starts {tasks} task(s) on each of {nodes} node(s) for every job, but "
            f"trainer.strategy={job.trainer.get('strategy')} trains in one process: add trainer=slurm "
            "(DDP on every GPU of the job)."
        )


def is_multirun(args: Sequence[str]) -> bool:
    """Whether the command line asks Hydra for a multirun (``-m``/``--multirun``)."""
    from hydra._internal.utils import get_args_parser

    try:
        return bool(get_args_parser().parse_args(list(args)).multirun)
    except SystemExit:
        return False


def sets_key(args: Sequence[str], key: str) -> bool:
    """Whether the command line overrides ``key`` itself (``key=...``, ``+key=...`` or ``++key=...``)."""
    return any(arg.lstrip("+").split("=", 1)[0] == key for arg in args)


def _compose(root: Path, overrides: Sequence[str], config_name: str = PRIMARY_CONFIG) -> DictConfig | None:
    """The config of one job with Hydra's own node, or None when Hydra cannot compose it."""
    from hydra import compose, initialize_config_dir

    try:
        with initialize_config_dir(config_dir=str(root), version_base="1.3"):
            return compose(config_name=config_name, overrides=list(overrides), return_hydra_config=True)
    except Exception:
        return None
