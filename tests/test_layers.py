"""The package's layers: commands only wire, no command imports another, no import runs back up.

Read from the source (every ``import``, also inside functions), so a new module or command is checked
as soon as it exists.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tests.conftest import REPO_ROOT

PACKAGE = REPO_ROOT / "src" / "cellseg"

#: Bottom to top. A module may import its own layer and the ones below it, never one above.
LAYERS: tuple[tuple[str, ...], ...] = (
    ("cellseg", "cellseg.errors", "cellseg.utils"),
    (
        "cellseg.models",
        "cellseg.metrics",
        "cellseg.losses",
        "cellseg.data.io",
        "cellseg.data.downloads",
        "cellseg.data.pipeline",
        "cellseg.instances",
        "cellseg.postprocess",
    ),
    (
        "cellseg.data",
        "cellseg.data.sources",
        "cellseg.stage_metrics",
        "cellseg.callbacks",
        "cellseg.runs",
        "cellseg.sweep_resume",
        "cellseg.optuna_search",
        "cellseg.cluster",
    ),
    (
        "cellseg.module",
        "cellseg.inference",
        "cellseg.exporters",
        "cellseg.hparams",
        "cellseg.evaluation",
        "cellseg.comparison",
        "cellseg.lr_finder",
        "cellseg.tuning",
        "cellseg.visualisation",
    ),
    ("cellseg.config",),
    ("cellseg.build", "cellseg.cli", "cellseg.preflight", "cellseg.training"),
)


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def cellseg_imports(path: Path) -> set[str]:
    """Every cellseg module ``path`` imports (``from cellseg.x import y`` counts ``cellseg.x.y`` when
    that is a module, else ``cellseg.x``)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names if alias.name.split(".")[0] == "cellseg"}
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "cellseg":
            for alias in node.names:
                sub = f"{node.module}.{alias.name}"
                found.add(sub if sub in MODULES else node.module)
    return found


MODULES = {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}
#: The ``python -m cellseg.<command>`` modules: they run as a script.
COMMANDS = {name for name, path in MODULES.items() if 'if __name__ == "__main__":' in path.read_text()}


def layer_of(module: str) -> int:
    """The layer of the longest prefix of ``module`` named in LAYERS; commands are the top."""
    if module in COMMANDS:
        return len(LAYERS)
    best, depth = None, -1
    for index, prefixes in enumerate(LAYERS):
        for prefix in prefixes:
            if (module == prefix or module.startswith(prefix + ".")) and prefix.count(".") > depth:
                best, depth = index, prefix.count(".")
    assert best is not None, f"{module} is in no layer of tests/test_layers.py: add it where it belongs"
    return best


def test_the_commands_are_found():
    assert {
        "cellseg.train",
        "cellseg.predict",
        "cellseg.evaluate",
        "cellseg.export",
        "cellseg.stats",
    } <= COMMANDS


@pytest.mark.parametrize("module", sorted(MODULES))
def test_no_import_runs_up_a_layer_and_no_command_imports_another(module):
    upward = []
    for imported in sorted(cellseg_imports(MODULES[module])):
        if imported in COMMANDS:
            upward.append(f"{imported} (a command)")
        elif layer_of(imported) > layer_of(module):
            upward.append(imported)
    assert not upward, f"{module} imports {', '.join(upward)}, above its layer"


def test_utils_depend_on_nothing_of_cellseg():
    for module, path in MODULES.items():
        if module.startswith("cellseg.utils"):
            outside = {m for m in cellseg_imports(path) if not m.startswith("cellseg.utils")}
            assert not outside, f"{module} imports {sorted(outside)}"


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_a_command_only_wires(command):
    """A command defines no classes and stays short: the parts it wires live in the library."""
    tree = ast.parse(MODULES[command].read_text())
    assert not [node.name for node in tree.body if isinstance(node, ast.ClassDef)]
    assert len(MODULES[command].read_text().splitlines()) < 160


def _config_targets() -> list[tuple[str, str]]:
    """(yaml file, target) of every cellseg ``_target_`` in conf/."""
    found = []
    for path in sorted((REPO_ROOT / "conf").rglob("*.yaml")):
        for line in path.read_text().splitlines():
            value = line.split("#", 1)[0].strip().removeprefix("- ")
            if value.startswith("_target_:") and value.split(":", 1)[1].strip().startswith("cellseg."):
                found.append((str(path.relative_to(REPO_ROOT)), value.split(":", 1)[1].strip()))
    return found


def test_config_targets_are_found():
    assert len(_config_targets()) > 40


@pytest.mark.parametrize("where,target", _config_targets())
def test_every_config_target_is_the_module_path_of_the_file_that_defines_it(where, target):
    module, _, name = target.rpartition(".")
    assert module in MODULES and MODULES[module].name != "__init__.py", (
        f"{where}: _target_ {target} does not name a module file of src/cellseg (a package face?)"
    )
    tree = ast.parse(MODULES[module].read_text())
    defined = {n.name for n in tree.body if isinstance(n, (ast.ClassDef, ast.FunctionDef))}
    assert name in defined, f"{where}: {MODULES[module]} defines no {name}"
