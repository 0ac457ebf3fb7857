"""python -m cellseg.compare on run folders with known numbers: grouping, intervals, paired tests, bad runs."""

from __future__ import annotations

import csv
import hashlib
import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from PIL import Image

from cellseg.comparison import compare_runs, find_run_folders, read_runs
from cellseg.comparison.commands import sweep_command
from cellseg.comparison.statistics import (
    bootstrap_interval,
    mean_and_sd,
    paired_comparison,
    sign_flip_p_value,
)
from cellseg.errors import ConfigError, DataError
from tests.conftest import run_cli


def write_run(
    folder: Path,
    seed: int,
    dice: float,
    config: dict[str, Any] | None = None,
    choices: dict[str, str] | None = None,
    status: str = "completed",
    extra: dict[str, float] | None = None,
) -> Path:
    """A run folder as cellseg.train writes it: metrics.json and Hydra's .hydra/ files."""
    overrides = [f"{k}={v}" for k, v in sorted((config or {}).items())] + [f"seed={seed}"]
    nested: dict[str, Any] = {"seed": seed, "trainer": {"max_epochs": 2}, "paths": {"run_dir": str(folder)}}
    for key, value in (config or {}).items():
        node = nested
        *parents, leaf = key.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    (folder / ".hydra").mkdir(parents=True)
    (folder / ".hydra" / "config.yaml").write_text(yaml.safe_dump(nested))
    (folder / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(overrides))
    scores = {"val/dice": dice, "val/iou": dice - 0.1, **{f"val/{k}": v for k, v in (extra or {}).items()}}
    history = [
        {"epoch": 0, "step": 1, **{k: v - 0.05 for k, v in scores.items()}},
        {"epoch": 1, "step": 2, **scores},
    ]
    summary = {
        "status": status,
        "error": "RuntimeError: CUDA out of memory" if status == "failed" else None,
        "seed": seed,
        "choices": {"loss": "ce", "channels": "fluorescence", **(choices or {})},
        "overrides": overrides,
        "monitor": {"metric": "val/dice", "mode": "max"},
        "epochs_run": 2,
        "best": {"epoch": 1, **scores},
        "final": {"epoch": 1, **scores},
        "history": history,
    }
    (folder / "metrics.json").write_text(json.dumps(summary))
    return folder


@pytest.fixture
def sweep(tmp_path: Path) -> Path:
    """Three settings of loss.cell_weight, seeds 1-3: 0.5 is clearly best, 1 overlaps it, 2 is worse."""
    dice = {0.5: [0.80, 0.82, 0.84], 1.0: [0.78, 0.81, 0.83], 2.0: [0.70, 0.72, 0.74]}
    job = 0
    for weight, values in dice.items():
        for seed, value in zip((1, 2, 3), values, strict=True):
            write_run(tmp_path / "multirun" / str(job), seed, value, {"loss.cell_weight": weight})
            job += 1
    return tmp_path / "multirun"


def folder_digest(root: Path) -> dict[str, str]:
    return {
        str(p): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(root.rglob("*")) if p.is_file()
    }


# ---------------------------------------------------------------- the statistics, against hand-computed values


def test_bootstrap_intervals_are_the_exact_percentiles_of_the_resampled_mean():
    # Two values: resampled means are a, (a+b)/2, b with probabilities 1/4, 1/2, 1/4.
    interval = bootstrap_interval([0.2, 0.6])
    assert (interval.low, interval.high) == pytest.approx((0.2, 0.6))
    # [0, 0, 0, 1]: the mean is k/4 with k ~ Binomial(4, 1/4); P(k = 0) = 81/256 > 2.5 %, and
    # P(k <= 2) = 243/256 = 0.949 < 97.5 % <= P(k <= 3) = 0.996, so the interval is [0, 0.75].
    interval = bootstrap_interval([0.0, 0.0, 0.0, 1.0])
    assert (interval.low, interval.high) == pytest.approx((0.0, 0.75))
    assert bootstrap_interval([0.5]) is None
    assert mean_and_sd([1.0, 2.0, 3.0]) == pytest.approx((2.0, 1.0))


def test_a_resumed_or_requeued_job_is_the_same_setting_as_the_others(tmp_path):
    """sweep.resume / sweep.requeued say how a job was run, not what: they make no axis of their own."""
    for job, seed in enumerate((1, 2)):
        write_run(tmp_path / str(job), seed, 0.8, {"loss.cell_weight": 1.0})
    write_run(tmp_path / "2", 3, 0.8, {"loss.cell_weight": 1.0, "sweep.resume": "/s", "sweep.requeued": True})
    comparison = compare_runs(read_runs(find_run_folders([tmp_path]), progress=False))
    assert comparison.axes == [] and [row.n for row in comparison.rows] == [3]


def test_sign_flip_p_value_counts_the_sign_patterns_at_least_as_extreme():
    # Of the 8 sign patterns of (1, 2, 3), only (+,+,+) and (-,-,-) reach |mean| >= 2.
    assert sign_flip_p_value([1.0, 2.0, 3.0]) == pytest.approx(2 / 8)
    assert sign_flip_p_value([1.0, -1.0]) == pytest.approx(1.0)
    paired = paired_comparison({1: 0.7, 2: 0.72, 3: 0.74, 4: 0.9}, {1: 0.8, 2: 0.82, 3: 0.84})
    assert paired.seeds == (1, 2, 3)
    assert paired.mean_difference == pytest.approx(-0.1)
    assert (paired.interval.low, paired.interval.high) == pytest.approx((-0.1, -0.1))
    assert paired.p_value == pytest.approx(0.25)
    assert paired_comparison({5: 0.1}, {1: 0.2}) is None


# ---------------------------------------------------------------- grouping, ranking and the tables


def test_replicates_are_grouped_ranked_and_compared_with_the_best_seed_by_seed(sweep):
    comparison = compare_runs(read_runs(find_run_folders([sweep]), progress=False))
    assert [a.key for a in comparison.axes] == ["loss.cell_weight"]
    assert [row.label for row in comparison.rows] == [
        "loss.cell_weight=0.5",
        "loss.cell_weight=1",
        "loss.cell_weight=2",
    ]
    best, close, worse = comparison.rows
    assert best.n == 3 and best.setting.seeds == [1, 2, 3]
    assert best.metrics["dice"].mean == pytest.approx(0.82)
    assert best.metrics["dice"].sd == pytest.approx(0.02)
    assert close.distinguishable is False and worse.distinguishable is True
    assert worse.paired["dice"].mean_difference == pytest.approx(-0.1)
    assert worse.paired["dice"].p_value == pytest.approx(0.25)
    assert comparison.metrics[:2] == ["dice", "iou"]


def test_the_cli_writes_the_summary_tables_plots_and_report_and_touches_no_run(sweep):
    before = folder_digest(sweep)
    result = run_cli(
        [str(sweep), "panel_images=0", "progress=false"], sweep.parent, command="cellseg.compare"
    )
    assert result.returncode == 0, result.stderr
    after = folder_digest(sweep)
    assert {k: v for k, v in after.items() if "/comparison/" not in k} == before  # the runs: untouched
    out = sweep / "comparison"
    with open(out / "summary.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert [r["setting"] for r in rows] == [
        "loss.cell_weight=0.5",
        "loss.cell_weight=1",
        "loss.cell_weight=2",
    ]
    assert [r["verdict"] for r in rows] == ["best", "not distinguishable", "worse"]
    assert float(rows[0]["dice_mean"]) == pytest.approx(0.82)
    assert float(rows[2]["dice_diff_vs_best"]) == pytest.approx(-0.1)
    assert float(rows[2]["dice_p_vs_best"]) == pytest.approx(0.25)
    assert "| 1 | loss.cell_weight=0.5 | 3 |" in (out / "summary.md").read_text()
    for plot in ("bars_dice.png", "tradeoff_loss_cell_weight.png", "curves_dice.png"):
        pixels = np.asarray(Image.open(out / "plots" / plot).convert("L"))
        assert pixels.std() > 5 and len(np.unique(pixels)) > 20, f"{plot} looks blank"
    report = (out / "report.html").read_text()
    assert report.count("data:image/png;base64,") == 4 and "loss.cell_weight=0.5,1.0,2.0" in report
    assert "loss.cell_weight=0.5" in result.stdout and "best" in result.stdout
    again = run_cli([str(sweep), "panel_images=0"], sweep.parent, command="cellseg.compare")
    assert again.returncode == 2 and "already holds" in again.stderr and "overwrite=true" in again.stderr


def test_failed_interrupted_running_and_unreadable_runs_are_listed_not_dropped(tmp_path):
    root = tmp_path / "sweep"
    write_run(root / "ok1", 1, 0.8, {"loss.cell_weight": 1.0})
    write_run(root / "ok2", 2, 0.9, {"loss.cell_weight": 1.0})
    write_run(root / "failed", 3, 0.5, {"loss.cell_weight": 1.0}, status="failed")
    write_run(root / "running", 4, 0.5, {"loss.cell_weight": 1.0}, status="running")
    truncated = write_run(root / "truncated", 5, 0.5, {"loss.cell_weight": 1.0})
    (truncated / "metrics.json").write_text('{"status": "compl')
    older = write_run(root / "older", 6, 0.5, {"loss.cell_weight": 1.0})
    (older / "metrics.json").write_text(json.dumps({"best": {"val/dice": 0.5}}))
    (root / "never_started" / ".hydra").mkdir(parents=True)
    (root / "never_started" / ".hydra" / "config.yaml").write_text(yaml.safe_dump({"trainer": {}, "seed": 7}))
    comparison = compare_runs(read_runs(find_run_folders([root]), progress=False))
    assert [row.n for row in comparison.rows] == [2]
    problems = {r.path.name: r.problem for r in comparison.problems}
    assert set(problems) == {"failed", "running", "truncated", "older", "never_started"}
    assert "CUDA out of memory" in problems["failed"]
    assert "still running, or killed" in problems["running"]
    assert "truncated or not JSON" in problems["truncated"]
    assert "older cellseg" in problems["older"]
    assert "before its first validation" in problems["never_started"]
    result = run_cli([str(root), "panel_images=0"], tmp_path, command="cellseg.compare")
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("not compared:") == 5


def test_a_group_chosen_differently_is_the_axis_not_the_keys_inside_it(tmp_path):
    for i, (choice, spec) in enumerate([("cytoplasm", "cytoplasm"), ("brightfield", "brightfield")]):
        write_run(tmp_path / str(i), 1, 0.8 - i / 10, {"channels.specs": [spec]}, {"channels": choice})
    comparison = compare_runs(read_runs(find_run_folders([tmp_path]), progress=False))
    assert [a.key for a in comparison.axes] == ["channels"]
    assert [row.label for row in comparison.rows] == ["channels=cytoplasm", "channels=brightfield"]
    assert any("One run per setting" in note for note in comparison.notes)
    assert comparison.rows[1].distinguishable is None


def test_mixed_data_sets_are_compared_with_the_difference_named(tmp_path):
    write_run(tmp_path / "a", 1, 0.8, {"data._target_": "cellseg.data.sources.isbi.IsbiDataModule"})
    write_run(tmp_path / "b", 1, 0.7, {"data._target_": "cellseg.data.sources.synthetic.SyntheticDataModule"})
    comparison = compare_runs(read_runs(find_run_folders([tmp_path]), progress=False))
    assert len(comparison.rows) == 2
    assert any("differ in data set or model (data._target_)" in note for note in comparison.notes)


def test_bad_input_gets_one_clear_line(sweep, tmp_path):
    runs = read_runs(find_run_folders([sweep]), progress=False)
    with pytest.raises(ConfigError, match=r"no run logged ap99; the runs logged: dice, iou"):
        compare_runs(runs, metrics=["ap99"])
    with pytest.raises(DataError, match="has no test split, or test=false"):
        compare_runs(runs, stage="test")
    with pytest.raises(DataError, match="matches nothing"):
        find_run_folders([str(tmp_path / "nothing*")])
    empty = tmp_path / "empty"
    empty.mkdir()
    result = run_cli([str(empty)], tmp_path, command="cellseg.compare")
    assert (
        result.returncode == 2
        and f"No training runs (metrics.json or .hydra/config.yaml) under {empty}" in result.stderr
    )
    result = run_cli([str(sweep), "metric=[dice]"], tmp_path, command="cellseg.compare")
    assert (
        result.returncode == 2
        and "Unknown option 'metric'" in result.stderr
        and "Did you mean metrics?" in result.stderr
    )


def test_the_sweep_command_is_rebuilt_from_a_full_grid_only(sweep, tmp_path):
    runs = read_runs(find_run_folders([sweep]), progress=False)
    assert sweep_command(runs) == "python -m cellseg.train -m loss.cell_weight=0.5,1.0,2.0 seed=1,2,3"
    assert sweep_command(runs[:-1]) is None  # 8 of the 9 grid points


TINY_SWEEP = [
    "-m",
    "loss.cell_weight=0.5,2",
    "seed=1,2",
    "data.num_train=4",
    "data.num_val=2",
    "data.num_test=0",
    "data.size=48",
    "data.crop_size=48",
    "data.batch_size=4",
    "model=unet_classic",
    "model.init_features=4",
    "model.depth=2",
    "trainer.max_epochs=2",
    "trainer.enable_progress_bar=false",
    "trainer.num_sanity_val_steps=0",
    "callbacks=minimal",
]


def _hparams(run: Path) -> tuple[dict[str, object], list[str], dict[str, float]]:
    """The HParams plugin's session values, declared metrics and their logged values in a run's events."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.plugins.hparams import plugin_data_pb2

    folder = next(p.parent for p in (run / "tensorboard").rglob("events.out.tfevents.*"))
    events = EventAccumulator(str(folder)).Reload()
    content = events.PluginTagToContent("hparams")
    parse = plugin_data_pb2.HParamsPluginData.FromString
    session = parse(content["_hparams_/session_start_info"]).session_start_info
    values = {
        k: v.WhichOneof("kind") and getattr(v, v.WhichOneof("kind")) for k, v in session.hparams.items()
    }
    declared = [m.name.tag for m in parse(content["_hparams_/experiment"]).experiment.metric_infos]
    logged = {tag: events.Scalars(tag)[-1].value for tag in declared if tag in events.Tags()["scalars"]}
    return values, declared, logged


@pytest.mark.slow
def test_a_real_sweep_compares_end_to_end_and_shows_in_one_hparams_table(tmp_path):
    sweep = tmp_path / "multirun"
    trained = run_cli([*TINY_SWEEP, f"hydra.sweep.dir={sweep}"], tmp_path, timeout=600)
    assert trained.returncode == 0, trained.stderr
    result = run_cli([str(sweep), "tile_size=48", "progress=false"], tmp_path, command="cellseg.compare")
    assert result.returncode == 0, result.stderr
    with open(sweep / "comparison" / "summary.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert sorted(r["setting"] for r in rows) == ["loss.cell_weight=0.5", "loss.cell_weight=2"]
    assert [r["n"] for r in rows] == ["2", "2"] and [r["seeds"] for r in rows] == ["1 2", "1 2"]
    panel = np.asarray(Image.open(sweep / "comparison" / "plots" / "panel.png").convert("L"))
    assert panel.shape[1] > 4 * 150 and panel.std() > 5  # input, truth and two settings, not blank
    assert (sweep / "comparison" / "report.html").read_text().count("data:image/png;base64,") >= 5
    # tensorboard --logdir <sweep>: every job in one HParams table, the swept key a column.
    jobs = sorted(p for p in sweep.iterdir() if (p / "metrics.json").is_file())
    assert len(jobs) == 4
    for job in jobs:
        values, declared, logged = _hparams(job)
        summary = json.loads((job / "metrics.json").read_text())
        assert values["loss/cell_weight"] == pytest.approx(float(summary["overrides"][0].split("=")[1]))
        assert {"hp/best_val/dice", "hp/final_val/dice"} <= set(declared)
        assert logged["hp/best_val/dice"] == pytest.approx(summary["best"]["val/dice"], abs=1e-6)
        assert logged["hp/final_val/dice"] == pytest.approx(summary["final"]["val/dice"], abs=1e-6)


@pytest.mark.skipif(shutil.which("chromium") is None, reason="needs a headless chromium")
def test_the_report_renders_in_a_real_browser(sweep, tmp_path):
    result = run_cli([str(sweep), "panel_images=0", "progress=false"], tmp_path, command="cellseg.compare")
    assert result.returncode == 0, result.stderr
    shot = tmp_path / "report.png"
    subprocess.run(
        [
            "chromium",
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--window-size=1280,1600",
            f"--screenshot={shot}",
            (sweep / "comparison" / "report.html").as_uri(),
        ],
        capture_output=True,
        timeout=120,
        check=True,
    )
    pixels = np.asarray(Image.open(shot).convert("RGB"))
    best_row = np.all(pixels == (0xE3, 0xF2, 0xE1), axis=-1)  # the best setting's row background
    assert best_row.sum() > 1000
    assert (pixels.std(axis=-1) > 20).sum() > 10_000  # coloured plots were drawn, not broken images
