"""Every ``python -m cellseg.<command>`` shown in the README and docs/ is checked.

The commands are read from the fenced ``bash`` / ``sh`` / plain code blocks of README.md, docs/*.md and
experiments/*.md (``\\`` continuations joined, ``# comments`` dropped, shell quoting undone as a shell
would). Placeholders such as ``<run>`` or ``ckpt=...`` are made concrete.

Default suite:

- every command passes its command's early check (``cellseg.config.check_command_line``: unknown keys,
  unknown group options, missing values), its overrides parse, and Hydra composes the config of each
  of its jobs (a sweep without ``-m`` fails there);
- ``--cfg job`` runs for real as a user would type it (the statistics and help commands, as cheap but
  about 13 s of imports each, run in the slow suite);
- the error messages shown in ``text`` blocks (``$ python -m cellseg...`` then ``cellseg: error: ...``)
  are the ones the early check gives;
- every relative link and anchor between the pages resolves.

Slow suite (``-m slow``): ``python -m cellseg.stats ...`` and ``--help`` run; every train and lr_find
command runs with tiny settings appended (skipped where it needs a GPU or data that is absent); every
predict / evaluate / export command runs on a checkpoint trained once for the purpose; the error
examples are what the commands print.
"""

from __future__ import annotations

import copy
import functools
import itertools
import multiprocessing
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import numpy as np
import pytest
import yaml
from hydra import compose, initialize_config_dir
from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
from hydra._internal.utils import get_args_parser
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.errors import HydraException
from omegaconf import OmegaConf

from cellseg.config import PRIMARY_CONFIG, check_command_line, config_dir, config_groups
from cellseg.errors import CellsegError
from tests.conftest import FAST, REPO_ROOT, SHARED_DATA, TINY_ISBI

DOC_FILES = sorted(
    [REPO_ROOT / "README.md", *(REPO_ROOT / "docs").glob("*.md"), *(REPO_ROOT / "experiments").glob("*.md")]
)
SHELL_LANGUAGES = {"", "bash", "sh", "shell", "console"}
PREFIX = "python -m cellseg."
MIN_COMMANDS = 20

# python -m cellseg.<module> -> the primary config it checks and composes (its run_command("<name>", ...)).
CONFIG_OF = {
    "train": "train",
    "predict": "predict",
    "evaluate": "evaluate",
    "export": "export",
    "stats": "stats",
    "lr_find": "lr_find",
    "show": "show",
}
# Commands whose first word names what to do (python -m cellseg.show augment ...): the key that word sets.
TARGET_WORD = {"show": "what"}

# Placeholders of the docs, made concrete. A run folder name as Hydra writes it:
RUN_NAME = "2026-01-01_00-00-00"
PLACEHOLDERS = {"<run>": RUN_NAME, "<date>_<time>": RUN_NAME, "<date>/<time>": "2026-01-01/00-00-00"}


# ---------------------------------------------------------------------------------------------------
# Extraction


@dataclass(frozen=True)
class DocCommand:
    """One ``python -m cellseg.<module> <args>`` line of a doc's code block."""

    path: Path
    line: int  # 1-based line of the command's first line
    text: str  # as shown (continuations joined)
    module: str
    args: tuple[str, ...]

    @property
    def where(self) -> str:
        return f"{self.path.relative_to(REPO_ROOT).as_posix()}:{self.line}"

    @property
    def multirun(self) -> bool:
        return "-m" in self.args or "--multirun" in self.args


@dataclass(frozen=True)
class DocError:
    """A ``$ python -m cellseg...`` line of a ``text`` block and the ``cellseg: error:`` line after it."""

    command: DocCommand
    message: str


def _code_blocks(path: Path) -> list[tuple[str, list[tuple[int, str]]]]:
    """(language, [(line number, line)]) of every fenced code block of a markdown file."""
    blocks: list[tuple[str, list[tuple[int, str]]]] = []
    fence: str | None = None
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        stripped = line.strip()
        if fence is None:
            match = re.match(r"^(`{3,}|~{3,})\s*([\w+-]*)", stripped)
            if match:
                fence, language = match.group(1), match.group(2).lower()
                blocks.append((language, []))
        elif stripped.startswith(fence) and not stripped[len(fence) :].strip():
            fence = None
        else:
            blocks[-1][1].append((number, stripped))
    return blocks


def _logical_lines(lines: list[tuple[int, str]]) -> list[tuple[int, str]]:
    """Lines with their ``\\`` continuations joined, numbered by their first line."""
    joined: list[tuple[int, str]] = []
    start, parts = None, []
    for number, line in lines:
        if start is None:
            start = number
        if line.endswith("\\"):
            parts.append(line[:-1].strip())
            continue
        parts.append(line)
        joined.append((start, " ".join(p for p in parts if p)))
        start, parts = None, []
    if parts:
        joined.append((start, " ".join(parts)))
    return joined


def _command(path: Path, number: int, text: str) -> DocCommand | None:
    if not text.startswith(PREFIX):
        return None
    words = shlex.split(text, comments=True)  # the arguments a shell would pass, comments dropped
    module = words[2].removeprefix("cellseg.")
    return DocCommand(path, number, text, module, tuple(words[3:]))


def extract(paths: Sequence[Path] = DOC_FILES) -> tuple[list[DocCommand], list[DocError]]:
    """The commands of the shell code blocks and the error examples of the ``text`` blocks."""
    commands: list[DocCommand] = []
    errors: list[DocError] = []
    for path in paths:
        for language, lines in _code_blocks(path):
            logical = _logical_lines(lines)
            if language in SHELL_LANGUAGES:
                commands += [c for number, text in logical if (c := _command(path, number, text))]
            elif language == "text":
                for (number, text), (_, following) in itertools.pairwise([*logical, (0, "")]):
                    if text.startswith("$ " + PREFIX) and following.startswith("cellseg: error: "):
                        command = _command(path, number, text[2:])
                        errors.append(DocError(command, following.removeprefix("cellseg: error: ")))
    return commands, errors


COMMANDS, ERRORS = extract()


def _ids(items) -> list[str]:
    return [(item.command if isinstance(item, DocError) else item).where for item in items]


def _unique(commands: Sequence[DocCommand]) -> list[DocCommand]:
    """The first of each set of identical command lines (the same command shown on several pages)."""
    seen: set[tuple[str, tuple[str, ...]]] = set()
    unique = []
    for command in commands:
        if (command.module, command.args) not in seen:
            seen.add((command.module, command.args))
            unique.append(command)
    return unique


def _is_help(command: DocCommand) -> bool:
    return bool({"--help", "-h"} & set(command.args))


def _is_cheap(command: DocCommand) -> bool:
    """Builds a model at most: statistics, a printed config, a help text."""
    return command.module == "stats" or _is_help(command) or bool({"--cfg", "-c"} & set(command.args))


CHEAP = [c for c in _unique(COMMANDS) if _is_cheap(c)]
RUNNABLE = [c for c in _unique(COMMANDS) if not _is_cheap(c)]
# Each of these costs about 13 s of CPU on 2 cores, 10 of them importing torch and Lightning: the default
# suite runs one (--cfg job, the training entry point as a user starts it); the model statistics and help
# texts run in the slow suite (the early check above covers their arguments in the default one).
CHEAP_PARAMS = [
    pytest.param(c, id=c.where, marks=[] if {"--cfg", "-c"} & set(c.args) else [pytest.mark.slow])
    for c in CHEAP
]


# ---------------------------------------------------------------------------------------------------
# Making commands concrete


def _config_name(command: DocCommand) -> str:
    if command.module in CONFIG_OF:
        return CONFIG_OF[command.module]
    source = REPO_ROOT / "src" / "cellseg" / f"{command.module}.py"
    text = source.read_text(encoding="utf-8") if source.is_file() else ""
    if match := re.search(r"run_command\(\s*[\"'](\w+)[\"']", text):
        hint = f"it passes '{match.group(1)}' to run_command in {source.relative_to(REPO_ROOT)}: add it to CONFIG_OF"
    elif text:
        hint = (
            f"{source.relative_to(REPO_ROOT)} does not go through cellseg.cli.run_command, so there is no early "
            "check to call: give it its own check here (and an end-to-end recipe), or route it through run_command"
        )
    else:
        hint = f"there is no {source.relative_to(REPO_ROOT)}: is the command name right?"
    pytest.fail(
        f"{command.where}: 'python -m cellseg.{command.module}' is not known to tests/test_docs.py; {hint}."
    )


def _checkpoint_task(args: Sequence[str]) -> str:
    """The task (run folder under outputs/) whose checkpoint a ``ckpt=...`` stands for."""
    isbi = {"data=isbi", "experiment=isbi_unet"} & set(args)
    return "isbi_unet" if isbi else "train"


def concrete(command: DocCommand) -> list[str]:
    """The command's arguments with the docs' placeholders filled in (a target word as the last override, as
    the command writes it before Hydra sees it); skips when one cannot be."""
    args = []
    words = list(command.args)
    if command.module in TARGET_WORD and words and "=" not in words[0] and not words[0].startswith("-"):
        words.append(f"{TARGET_WORD[command.module]}={words.pop(0)}")
    for arg in words:
        for placeholder, value in PLACEHOLDERS.items():
            arg = arg.replace(placeholder, value)
        if arg == "ckpt=...":
            arg = f"ckpt=outputs/{_checkpoint_task(command.args)}/{RUN_NAME}/checkpoints/best.ckpt"
        args.append(arg)
    unknown = [a for a in args if re.search(r"<[\w.-]+>", a) or a.endswith("=...")]
    if unknown:
        pytest.skip(f"{command.where}: placeholder without a concrete value: {' '.join(unknown)}")
    return args


def _parse(command: DocCommand, args: Sequence[str]):
    """argparse result and Hydra overrides of the arguments; fails the test when they do not parse."""
    try:
        parsed = get_args_parser().parse_args(list(args))
    except SystemExit:
        pytest.fail(f"{command.where}: Hydra's flags do not parse: {command.text}")
    try:
        overrides = OverridesParser.create().parse_overrides(parsed.overrides)
    except HydraException as error:
        pytest.fail(f"{command.where}: an override does not parse as Hydra reads it: {command.text}\n{error}")
    return parsed, overrides


def _jobs(parsed, overrides) -> list[list[str]]:
    """The override lists of the jobs the command starts: one, or one per point of a sweep (an
    interval, which an Optuna search samples, stands here for its lower end)."""
    if not parsed.multirun:
        return [list(parsed.overrides)]
    parser = OverridesParser.create()
    points = [
        parser.parse_override(f"{o.get_key_element()}={o.value().start}") if o.is_interval_sweep() else o
        for o in overrides
    ]
    (batch,) = BasicSweeper.split_arguments(points, None)
    return batch


def _compose(config_name: str, overrides: Sequence[str]):
    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        return compose(config_name=config_name, overrides=list(overrides), return_hydra_config=True)


# ---------------------------------------------------------------------------------------------------
# Default suite: what the docs show, checked without running anything expensive


def test_the_docs_show_enough_commands_to_check():
    """Guards the extractor: a change of the markdown must not leave it silently finding nothing."""
    assert len(COMMANDS) >= MIN_COMMANDS, f"only {len(COMMANDS)} commands found in {len(DOC_FILES)} files"
    assert {c.module for c in COMMANDS} >= {"train", "predict", "evaluate", "export", "stats"}
    assert any(c.multirun for c in COMMANDS)
    assert ERRORS, "no error example (text block with '$ python -m cellseg...' and 'cellseg: error:') found"


def test_the_extractor_reads_commands_as_a_shell_would(tmp_path):
    page = tmp_path / "page.md"
    page.write_text(
        "Intro `python -m cellseg.train inline=1` is prose, not a block.\n"
        "```bash\n"
        "python -m cellseg.train a=1 b='[1,2]'   # a comment\n"
        "pip install something\n"
        "python -m cellseg.train -m data=x \\\n"
        "    c=1,2 d=\"'^(w\\w+)_'\"\n"
        "```\n"
        "- a list item:\n"
        "  ```\n"
        "  python -m cellseg.predict ckpt=x.ckpt\n"
        "  ```\n"
        "```yaml\n"
        "python -m cellseg.train not=a-command\n"
        "```\n"
        "```text\n"
        "$ python -m cellseg.train model=bad\n"
        "cellseg: error: Unknown option 'bad'.\n"
        "```\n",
        encoding="utf-8",
    )
    commands, errors = extract([page])
    assert [(c.line, c.module, c.args) for c in commands] == [
        (3, "train", ("a=1", "b=[1,2]")),
        (5, "train", ("-m", "data=x", "c=1,2", "d='^(w\\w+)_'")),
        (10, "predict", ("ckpt=x.ckpt",)),
    ]
    assert commands[1].multirun and not commands[0].multirun
    assert [(e.command.args, e.message) for e in errors] == [(("model=bad",), "Unknown option 'bad'.")]


def test_the_readme_keeps_the_set_up_commands_ci_looks_for():
    readme = (REPO_ROOT / "README.md").read_text(encoding="utf-8")
    block = (
        '```bash\npython -m pip install -c constraints.txt -e ".[dev]"\npython -m pytest -m "not slow"\n```'
    )
    assert block in readme


@pytest.mark.parametrize("module", sorted(CONFIG_OF))
def test_the_config_names_are_those_the_commands_check(module):
    source = (REPO_ROOT / "src" / "cellseg" / f"{module}.py").read_text(encoding="utf-8")
    assert re.search(rf"run_command\(\s*[\"']{CONFIG_OF[module]}[\"']", source), source[-400:]


# Composed configs by (config name, overrides). Composing is most of the early check's time (about 0.25 s
# each on 2 cores) and the same configs recur across the docs' commands, so both the early check's own
# compositions and this module's are kept; the results are the same, only computed once.
_COMPOSED: dict[tuple[str, tuple[str, ...]], object] = {}
_EARLY_CHECKED: dict[tuple[str, tuple[str, ...]], str | None] = {}


def _memo_compose(real):
    @functools.wraps(real)
    def compose_once(root, overrides, config_name=PRIMARY_CONFIG):
        key = (config_name, tuple(overrides))
        if key not in _COMPOSED:
            _COMPOSED[key] = real(root, overrides, config_name)
        cfg = _COMPOSED[key]
        return copy.deepcopy(cfg) if cfg is not None else None  # the check may unlock or change it

    return compose_once


def _composes(config_name: str, job: Sequence[str]) -> str | None:
    """None when Hydra composes the job's config, else what it says."""
    key = (config_name, tuple(job))
    if _COMPOSED.get(key) is not None:
        return None
    try:
        _COMPOSED[key] = _compose(config_name, job)
    except Exception as error:  # what Hydra would print instead of starting the job
        return f"{type(error).__name__}: {error}"
    return None


def _structurally_distinct(jobs: list[list[str]]) -> list[list[str]]:
    """One job per combination of group choices: the jobs of a sweep over plain values compose alike."""
    groups = set(config_groups())
    distinct, seen = [], set()
    for job in jobs:
        choices = tuple(o for o in job if _key(o) in groups or "/" in _key(o))
        if choices not in seen:
            seen.add(choices)
            distinct.append(job)
    return distinct


def _early_check(command: DocCommand, args: list[str]) -> str | None:
    """What is wrong with the command, as its early check and Hydra's composition see it, or None."""
    if command.module == "compare":  # not a Hydra command: its own parser is the early check
        from cellseg.compare import parse_args

        try:
            parse_args(args)
        except CellsegError as error:
            return f"cellseg: error: {error}"
        return None
    config_name = _config_name(command)
    key = (command.module, tuple(args))
    if key in _EARLY_CHECKED:
        return _EARLY_CHECKED[key]
    parsed, overrides = _parse(command, args)
    import cellseg.config

    real = getattr(cellseg.config, "_compose", None)
    if real is not None and not getattr(real, "memoised", False):  # in a worker process: patched there only
        cellseg.config._compose = _memo_compose(real)
        cellseg.config._compose.memoised = True
    problem = None
    try:
        check_command_line(args, config_name=config_name, job_checks=())
    except CellsegError as error:
        problem = f"cellseg: error: {error}"
    else:
        for job in _structurally_distinct(_jobs(parsed, overrides)):
            if (error := _composes(config_name, job)) is not None:
                problem = f"the job {job} does not compose: {error}"
                break
    _EARLY_CHECKED[key] = problem
    return problem


def _early_check_outcome(command: DocCommand) -> tuple[str, str | None]:
    """("ok", None), ("fail", why) or ("skip", why) of one command; runs in a worker process."""
    os.chdir(REPO_ROOT)  # the docs' relative paths are written for the repository top
    try:
        problem = _early_check(command, concrete(command))
    except pytest.skip.Exception as outcome:
        return "skip", str(outcome)
    except pytest.fail.Exception as outcome:
        return "fail", str(outcome)
    return ("ok", None) if problem is None else ("fail", f"{command.where}: {command.text}\n  {problem}")


@pytest.fixture(scope="module")
def early_checks(request) -> dict[str, tuple[str, str | None]]:
    """The outcomes of the selected commands' early checks, computed side by side on every core.

    Each check composes Hydra configs (about 0.3 s each on 2 cores, most of this module's time), and
    they are independent: a pool of forked workers runs them in parallel.
    """
    selected = [
        item.callspec.params["command"]
        for item in request.session.items
        if getattr(item, "originalname", "") == "test_documented_command_passes_its_early_check"
    ]
    workers = max(1, min(len(selected), len(os.sched_getaffinity(0)), 4))
    with multiprocessing.get_context("fork").Pool(workers) as pool:
        outcomes = pool.map(_early_check_outcome, selected, chunksize=1)
    return {command.where: outcome for command, outcome in zip(selected, outcomes, strict=True)}


@pytest.mark.parametrize("command", COMMANDS, ids=_ids(COMMANDS))
def test_documented_command_passes_its_early_check(command, early_checks):
    status, why = early_checks[command.where]
    if status == "skip":
        pytest.skip(why)
    assert status == "ok", why


@pytest.mark.parametrize("example", ERRORS, ids=_ids(ERRORS))
def test_documented_error_is_the_one_the_early_check_gives(example, monkeypatch):
    command = example.command
    monkeypatch.chdir(REPO_ROOT)
    try:
        check_command_line(concrete(command), config_name=_config_name(command), job_checks=())
    except CellsegError as error:
        _assert_same_message(example, str(error))
    else:
        pytest.skip(
            f"{command.where}: raised when the run starts, not by the early check (see the slow test)"
        )


def _assert_same_message(example: DocError, actual: str) -> None:
    shown = example.message.strip()
    if shown.endswith("..."):  # the docs may cut a long message short
        assert actual.startswith(shown[:-3].rstrip()), (
            f"{example.command.where}\n shown: {shown}\nactual: {actual}"
        )
    else:
        assert actual == shown, f"{example.command.where}\n shown: {shown}\nactual: {actual}"


@dataclass
class Finished:
    returncode: int
    stdout: str
    stderr: str

    def report(self, command: DocCommand, args: Sequence[str]) -> str:
        return (
            f"{command.where}: python -m cellseg.{command.module} {shlex.join(args)}\n{self.stderr[-3000:]}"
        )


@dataclass
class Running:
    """A started command; its output goes to temporary files, so processes side by side never block."""

    process: subprocess.Popen
    stdout: IO[str]
    stderr: IO[str]

    def finish(self, timeout: float = 900) -> Finished:
        try:
            self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        streams = []
        for stream in (self.stdout, self.stderr):
            stream.seek(0)
            streams.append(stream.read())
            stream.close()
        return Finished(self.process.returncode, *streams)

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()


def _cli(args: Sequence[str], cwd: Path, command: str) -> Running:
    """``python -m <command> <args>`` started as a user would, from ``cwd`` (not waited for)."""
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    env.pop("CELLSEG_OUTPUT_ROOT", None)
    stdout, stderr = tempfile.TemporaryFile("w+"), tempfile.TemporaryFile("w+")  # noqa: SIM115 (closed by finish)
    process = subprocess.Popen(
        [sys.executable, "-m", command, *args], cwd=cwd, stdout=stdout, stderr=stderr, env=env
    )
    return Running(process, stdout, stderr)


def _finish(running: Running) -> Finished:
    return running.finish()


@pytest.fixture(scope="module")
def cheap_runs(request, tmp_path_factory) -> dict[str, tuple[Path, list[str], Running]]:
    """The selected cheap commands, started at once (they spend most of their time importing torch)."""
    selected = [
        item.callspec.params["command"]
        for item in request.session.items
        if getattr(item, "originalname", "") == "test_cheap_documented_command_runs"
    ]
    runs = {}

    def start(command: DocCommand) -> None:
        cwd = tmp_path_factory.mktemp("cheap")
        hydra_command = command.module in CONFIG_OF  # paths.output_root is a key of its config
        args = [*command.args, *([f"paths.output_root={cwd / 'outputs'}"] if hydra_command else [])]
        runs[command.where] = (cwd, args, _cli(args, cwd, f"cellseg.{command.module}"))

    for command in selected:
        start(command)
    runs["start"] = start
    yield runs
    runs.pop("start")
    for _, _, running in runs.values():
        running.kill()


@pytest.fixture(scope="module", autouse=True)
def _cheap_runs_start_first(request):
    """When cheap commands are selected, start them before anything else: they run beside the checks."""
    if any(
        getattr(item, "originalname", "") == "test_cheap_documented_command_runs"
        for item in request.session.items
    ):
        request.getfixturevalue("cheap_runs")


@pytest.mark.parametrize("command", CHEAP_PARAMS)
def test_cheap_documented_command_runs(command, cheap_runs):
    if command.where not in cheap_runs:
        cheap_runs["start"](command)
    cwd, args, process = cheap_runs[command.where]
    result = _finish(process)
    assert result.returncode == 0, result.report(command, args)
    written = sorted(p.relative_to(cwd).as_posix() for p in cwd.rglob("*") if p.is_file())
    if "--cfg" in args or "-c" in args:
        cfg = yaml.safe_load(result.stdout)
        assert isinstance(cfg, dict) and "model" in cfg and "data" in cfg, result.stdout[:2000]
        assert written == [], f"--cfg job should run nothing, but wrote {written}"
    elif "--help" in args or "-h" in args:
        assert f"cellseg.{command.module}" in result.stdout, result.stdout[:2000]
        assert written == [], f"--help should run nothing, but wrote {written}"
    else:  # python -m cellseg.stats: the table, as .csv and .md under <output_root>/stats/<arch>/
        tables = {
            p.rsplit(".", 1)[1]
            for p in written
            if re.fullmatch(r"outputs/stats/\w+/stats_\d+x\d+x\d+\.\w+", p)
        }
        assert tables == {"csv", "md"}, written
        assert "mult" in result.stdout.lower(), result.stdout[-2000:]


def _slug(heading: str) -> str:
    """GitHub's anchor for a heading."""
    text = re.sub(r"[`*_]{2,}|[`*]", "", heading.strip().lower())
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def _anchors(path: Path) -> set[str]:
    text = re.sub(r"```.*?```", "", path.read_text(encoding="utf-8"), flags=re.S)
    return {_slug(h) for h in re.findall(r"^#{1,6}\s+(.+?)\s*#*$", text, flags=re.M)}


def _links(path: Path) -> list[tuple[int, str]]:
    links = []
    in_code = False
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if line.strip().startswith(("```", "~~~")):
            in_code = not in_code
        if in_code:
            continue
        line = re.sub(r"`[^`]*`", "", line)
        links += [(number, target) for target in re.findall(r"\]\(([^)\s]+)\)", line)]
    return links


MARKDOWN = sorted([REPO_ROOT / "README.md", *(REPO_ROOT / "docs").glob("*.md")])


@pytest.mark.parametrize("path", MARKDOWN, ids=[p.relative_to(REPO_ROOT).as_posix() for p in MARKDOWN])
def test_every_link_between_the_pages_resolves(path):
    broken = []
    for number, target in _links(path):
        if re.match(r"^[a-z]+:", target):
            continue  # http(s), mailto: not checked offline
        file_part, _, anchor = target.partition("#")
        linked = (path.parent / file_part).resolve() if file_part else path
        if not linked.exists():
            broken.append(f"{path.name}:{number}: {target} (no such file)")
        elif anchor and linked.suffix == ".md" and anchor not in _anchors(linked):
            broken.append(f"{path.name}:{number}: {target} (no heading '#{anchor}' in {linked.name})")
    assert not broken, "\n".join(broken)


# ---------------------------------------------------------------------------------------------------
# Slow suite: every documented command runs for real, with tiny settings appended

# Settings the tiny runs always shrink, even where a command sets them itself.
SHRINK = {
    "trainer.max_epochs",
    "hydra.sweeper.n_trials",
    "data.num_train",
    "data.num_val",
    "data.num_test",
    "data.size",
    "data.crop_size",
    "data.batch_size",
    "data.crops_per_image",
    "lr_find.num_training",
}
TINY_EXTRA = [
    "data.crops_per_image=1",
    "model.init_features=8",
    "++trainer.limit_train_batches=2",
    "++trainer.limit_val_batches=2",
    "++trainer.limit_test_batches=2",
    "lr_find.num_training=30",
    "hydra.sweeper.n_trials=2",  # an Optuna search (only where the command has that sweeper)
]
HF_CACHE = Path(
    os.environ.get(
        "HF_HUB_CACHE", Path(os.environ.get("HF_HOME", Path.home() / ".cache/huggingface")) / "hub"
    )
)


def _cached_weights() -> list[Path]:
    """segmentation-models-pytorch's pretrained encoders in the local Hugging Face cache."""
    return sorted(HF_CACHE.glob("models--smp-hub--*"))


def _key(override: str) -> str:
    return override.split("=", 1)[0].lstrip("+~")


def _absolute_shared(arg: str) -> str:
    """``../shared/...`` (relative to the repository top, where the docs start commands) made absolute."""
    return arg.replace("../shared/", f"{SHARED_DATA.parent}/")


def _skip_reason(command: DocCommand, args: Sequence[str]) -> str | None:
    import torch

    gpus = torch.cuda.device_count()
    for arg in args:
        key, _, value = arg.partition("=")
        if (key == "hydra/launcher" and value == "slurm") or (key == "trainer" and value == "slurm"):
            return "needs a SLURM cluster (tests/test_cluster.py checks the sbatch script it writes)"
        if key == "sweep.resume":
            return "resumes a stopped sweep (tests/test_sweep_resume.py and test_optuna_search.py stop and resume real ones)"
        if key == "trainer" and value in {"gpu", "ddp"} and gpus == 0:
            return f"trainer={value} needs a CUDA GPU"
        if (
            key == "trainer.devices"
            and value.isdigit()
            and int(value) > gpus
            and "trainer=ddp_cpu" not in args
        ):
            return f"trainer.devices={value} needs {value} GPUs ({gpus} here)"
        if key in {"data.root", "input"} and "*" not in value:
            path = Path(value) if Path(value).is_absolute() else REPO_ROOT / value
            if value.startswith(("/", "../")) and not path.exists():
                return f"{key}={value} is not on this machine"
        if key == "model.encoder_weights" and value not in {"null", "None"} and not _cached_weights():
            return f"pretrained weights: the Hugging Face cache {HF_CACHE} holds none (runs never download)"
    return None


def _tiny(command: DocCommand, args: list[str], output_root: Path) -> list[str]:
    """The command's own arguments with the tiny settings appended (only keys its config has)."""
    parsed, overrides = _parse(command, args)
    cfg = _compose(CONFIG_OF[command.module], _jobs(parsed, overrides)[0])
    given = {_key(a) for a in args if "=" in a}
    extra = []
    for override in [*FAST, *TINY_EXTRA]:
        key = _key(override)
        if key in given and key not in SHRINK:
            continue  # the command's own choice is what it documents
        if "." not in key:  # a group choice: not where the command chose that group or set keys in it
            if not any(g == key or g.startswith(key + ".") for g in given):
                extra.append(override)
        elif override.startswith("++") or OmegaConf.select(cfg, key, default="<absent>") != "<absent>":
            extra.append(override)
    if "paths.output_root" not in given or Path(_value(args, "paths.output_root")).is_absolute():
        extra.append(f"paths.output_root={output_root}")  # a relative one stays inside the test's folder
    if "ckpt_path" in given:
        extra.append("trainer.max_epochs=2")  # resume a 1-epoch run for one more epoch
    return [*args, *extra]


def _value(args: Sequence[str], key: str) -> str:
    return next(a.split("=", 1)[1] for a in args if _key(a) == key)


def _number_of_jobs(command: DocCommand, args: Sequence[str]) -> int:
    parsed, overrides = _parse(command, args)
    jobs = _jobs(parsed, overrides)
    trials = OmegaConf.select(_compose(CONFIG_OF[command.module], jobs[0]), "hydra.sweeper.n_trials")
    return len(jobs) if trials is None else trials  # an Optuna search runs n_trials jobs


def _write_images(folder: Path, planes: int, count: int = 2, size: int = 96) -> None:
    import tifffile

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for i in range(count):
        tifffile.imwrite(
            folder / f"field{i}.tif",
            rng.integers(100, 4000, (planes, size, size), dtype=np.uint16),
            photometric="minisblack",
        )


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A run folder per task, trained once on first use by ``python -m cellseg.train`` (tiny settings)."""
    runs: dict[str, Path] = {}
    base = tmp_path_factory.mktemp("trained")

    def get(task: str) -> Path:
        if task in runs:
            return runs[task]
        run = base / task / RUN_NAME
        if task == "train":
            args = [*FAST, f"hydra.run.dir={run}"]
        elif task == "flows":  # a target=flows run: for the commands that tune its decoding
            args = [*FAST, "target=flows", f"hydra.run.dir={run}"]
        elif task in ("isbi_unet", "isbi_fast"):  # an ISBI checkpoint (evaluate scores V_rand on it)
            if not (SHARED_DATA / "isbi2012").is_dir():
                pytest.skip("needs ../shared/data/isbi2012 for an ISBI checkpoint")
            args = [
                *TINY_ISBI,
                "callbacks=minimal",
                "test=false",
                f"hydra.run.dir={run}",
            ]
        else:
            pytest.fail(f"no recipe in tests/test_docs.py for a checkpoint of the task '{task}'")
        result = _finish(_cli(args, base, "cellseg.train"))
        assert result.returncode == 0, result.stderr[-3000:]
        runs[task] = run
        return run

    return get


def _workspace(tmp_path: Path, command: DocCommand, trained) -> Path:
    """A folder to start the command from: the checkpoints it names under outputs/, images as inputs."""
    work = tmp_path / "work"
    work.mkdir()
    tasks = {m for a in command.args for m in re.findall(r"^\w+=outputs/(\w+)/<", a)}
    if "ckpt=..." in command.args:
        tasks.add(_checkpoint_task(command.args))
    for task in tasks:
        # hard links: each test has its own run folder (evaluate and export write next to the checkpoint)
        shutil.copytree(trained(task), work / "outputs" / task / RUN_NAME, copy_function=os.link)
    for arg in command.args:  # a campaign's own checkpoint (experiments/): its run folder, as trained
        key, _, value = arg.partition("=")
        if key == "ckpt" and value.startswith("outputs/campaigns/") and "<" not in value:
            task = "flows" if "tune=true" in command.args else _checkpoint_task(command.args)
            shutil.copytree(trained(task), work / Path(value).parents[1], copy_function=os.link)
            tasks.add(task)
    if tasks & {"train", "flows"}:
        for folder in ("images", "my_images"):
            _write_images(work / folder, planes=5)  # the synthetic data's five channels
    return work


def _metrics_files(root: Path) -> list[Path]:
    return sorted(root.rglob("metrics.json"))


@pytest.mark.slow
@pytest.mark.parametrize("command", RUNNABLE, ids=_ids(RUNNABLE))
def test_documented_command_runs_end_to_end(command, tmp_path, trained):
    if command.module == "compare":
        pytest.skip(
            f"{command.where}: needs a sweep; tests/test_compare.py runs compare on a real one end to end"
        )
    if command.module not in {"train", "lr_find", "predict", "evaluate", "export", "show"}:
        pytest.fail(f"{command.where}: no end-to-end recipe for 'python -m cellseg.{command.module}' here")
    args = [_absolute_shared(a) for a in concrete(command)]
    reason = _skip_reason(command, args)
    if reason:
        pytest.skip(f"{command.where}: {reason}")
    work = _workspace(tmp_path, command, trained)
    before = set(_metrics_files(tmp_path))
    if command.module in {"train", "lr_find"}:
        args = _tiny(command, args, tmp_path / "outputs")
    else:
        args = [*args, "progress=false"] if command.module != "export" else args
    started = time.monotonic()
    result = _finish(_cli(args, work, f"cellseg.{command.module}"))
    assert result.returncode == 0, result.report(command, args)
    if command.module == "train":
        new = [p for p in _metrics_files(tmp_path) if p not in before]
        assert len(new) == _number_of_jobs(command, args), (new, result.report(command, args))
        for path in new:
            assert '"status": "completed"' in path.read_text(), path.read_text()[:2000]
    elif command.module == "lr_find":
        found = sorted(tmp_path.rglob("lr_find.json"))
        assert len(found) == _number_of_jobs(command, args), (found, result.report(command, args))
    elif command.module == "predict":
        output = work / _value(args, "output")
        assert (output / "predict.json").is_file(), sorted(output.rglob("*"))
    elif command.module == "show":  # its PNG(s): outputs/show/<what>.png, or output=... (maybe per sweep job)
        assert list(work.rglob("*.png")), result.report(command, args)
    elif command.module == "evaluate":
        ckpt = work / _value(args, "ckpt")
        assert list((ckpt.parents[1] / "eval").glob("*/*/eval.json")), result.report(command, args)
    else:
        ckpt = work / _value(args, "ckpt")
        fmt = next((a.split("=", 1)[1] for a in args if _key(a) == "format"), "onnx")
        suffix = {"onnx": ".onnx", "torchscript": ".torchscript.pt", "bioimageio": ".bioimageio.zip"}[fmt]
        assert ckpt.with_name(ckpt.stem + suffix).is_file(), sorted(ckpt.parent.iterdir())
    print(f"{command.where}: {time.monotonic() - started:.0f} s")


@pytest.mark.slow
@pytest.mark.parametrize("example", ERRORS, ids=_ids(ERRORS))
def test_documented_error_is_what_the_command_prints(example, tmp_path):
    command = example.command
    if "model.encoder_weights" in command.text and _cached_weights():
        pytest.skip("pretrained weights are in the local cache here: the run would start")
    args = [
        *concrete(command),
        f"paths.output_root={tmp_path / 'outputs'}",
        *[f for f in FAST if "encoder" not in f],
    ]
    result = _finish(_cli(args, tmp_path, f"cellseg.{command.module}"))
    assert result.returncode != 0, result.stdout[-2000:]
    output = result.stdout + result.stderr  # early checks print to stderr, errors of a started run are logged
    printed = [line for line in output.splitlines() if "cellseg: error: " in line]
    assert printed, output[-3000:]
    _assert_same_message(example, printed[-1].split("cellseg: error: ", 1)[1])
    assert not list(tmp_path.rglob("*.ckpt")), "a failing command must not have trained"
