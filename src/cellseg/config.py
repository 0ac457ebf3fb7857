"""Where the Hydra config tree lives, and command-line checks that run before Hydra composes anything.

Hydra already rejects unknown options and keys, but its messages do not list what *is* valid. The
checks here turn ``model=unett`` or ``optimizer.lrr=1e-3`` into one line that names the bad name and
the valid choices or keys, before any data is generated or any directory is written.
"""

from __future__ import annotations

import difflib
from collections.abc import Sequence
from pathlib import Path

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import Override, ValueType
from omegaconf import DictConfig, ListConfig, OmegaConf

PRIMARY_CONFIG = "train"


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


class ConfigError(ValueError):
    """A command-line override that names an option or key the config tree does not have."""


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
    if override.value_type == ValueType.GLOB_CHOICE_SWEEP:
        return []  # group=glob(...) selects existing files only; nothing to check
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
            if part not in node:
                where = ".".join(walked) or "the top level"
                valid = sorted(str(k) for k in node)
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


def check_overrides(args: Sequence[str], root: Path | None = None) -> None:
    """Check the ``key=value`` arguments of a cellseg command line against the config tree.

    Group choices are checked against the files of each group; plain keys against the config composed
    with the given group choices (the first value of each sweep). ``+key``/``++key``/``~key`` and
    ``hydra.*`` overrides are Hydra's to judge and pass through unchecked.
    """
    from hydra import compose, initialize_config_dir

    root = root or config_dir()
    overrides = OverridesParser.create().parse_overrides([a for a in args if not a.startswith("-")])
    groups = set(config_groups(root))
    group_args: list[str] = []
    key_overrides: list[Override] = []
    for override in overrides:
        key = override.key_or_group
        if override.package or key.startswith("hydra") or override.is_add() or override.is_delete():
            continue
        if override.is_force_add():
            continue
        if key in groups:
            choices = _values(override)
            for choice in choices:
                check_group_choice(key, choice, root)
            if choices:
                group_args.append(f"{key}={choices[0]}")
        elif "/" in key:
            continue  # nested group choice such as hydra/launcher=...; Hydra checks those itself
        else:
            key_overrides.append(override)
    if not key_overrides:
        return
    with initialize_config_dir(config_dir=str(root), version_base="1.3"):
        cfg = compose(config_name=PRIMARY_CONFIG, overrides=group_args)
    OmegaConf.set_struct(cfg, False)
    for override in key_overrides:
        check_key(cfg, override.key_or_group)
