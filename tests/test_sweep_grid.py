"""Sweeps that survive: real Hydra multiruns of the smoke grid in subprocesses, with a real
SQLite MLflow store — failure isolation, resume, SIGKILL recovery and parallel launchers."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from lightyolo.sweep import CellResult, count_cells, progress_line, read_results, summary_table
from lightyolo.store.client import Store

from conftest import REPO, compose_config

SWEEPS = REPO / "sweeps"


def cell_runs(store: Path) -> pd.DataFrame:
    """The runs of the smoke experiment's cells (not the sweeps' parent runs, kind=sweep)."""
    runs = Store(f"sqlite:///{store}").runs_frame("smoke")
    return runs[runs["tags.kind"].isna()] if "tags.kind" in runs else runs


@pytest.fixture(scope="module")
def shapes_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("shapes")


def sweep_command(store: Path, sweep_dir: Path, shapes_root: Path, *overrides: str) -> list[str]:
    return [
        sys.executable, "-m", "lightyolo.run", "-m", "-cd", str(SWEEPS), "-cn", "smoke",
        f"mlflow.tracking_uri=sqlite:///{store}", f"hydra.sweep.dir={sweep_dir}",
        f"dataset.root={shapes_root}", *overrides,
    ]


def run_sweep(store: Path, sweep_dir: Path, shapes_root: Path, *overrides: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        sweep_command(store, sweep_dir, shapes_root, *overrides),
        cwd=REPO, capture_output=True, text=True, timeout=600,
    )


def completed_per_cell(runs: pd.DataFrame) -> pd.Series:
    done = runs[runs["tags.status"] == "completed"]
    return done.groupby("run_name").size()


def test_a_failing_cell_is_recorded_and_the_others_still_run_then_a_rerun_skips_them(
    tmp_path: Path, shapes_root: Path
) -> None:
    store = tmp_path / "mlflow.db"
    # model.scale=xl raises in build_detector: one failing cell among four.
    grid = ("backbone=c3", "neck=pan", "model.scale=n,s,m,xl")
    first = run_sweep(store, tmp_path / "sweep1", shapes_root, *grid)
    assert first.returncode != 0, first.stderr[-2000:]
    runs = cell_runs(store)
    assert sorted(runs["tags.status"]) == ["completed", "completed", "completed", "failed"]
    failed = runs[runs["tags.status"] == "failed"].iloc[0]
    assert failed["mlflow_status"] == "FAILED" and "xl" in failed["tags.error"]
    assert "failed" in first.stdout and "3/4 cells ok" in first.stdout
    assert "mAP50-95" in first.stdout  # the summary table

    second = run_sweep(store, tmp_path / "sweep2", shapes_root, *grid)
    assert second.returncode != 0  # the broken cell still fails
    again = cell_runs(store)
    assert (completed_per_cell(again) == completed_per_cell(runs)).all()
    assert len(again) == len(runs) + 1  # only the failed cell ran again
    assert "skipped" in second.stdout
    assert "skipping" in second.stderr + second.stdout


def test_a_sweep_killed_mid_cell_resumes_that_cell_from_its_checkpoint(
    tmp_path: Path, shapes_root: Path
) -> None:
    store, sweep_dir = tmp_path / "mlflow.db", tmp_path / "killed"
    grid = ("backbone=c3", "neck=pan,slim", "train.epochs=4")
    proc = subprocess.Popen(
        sweep_command(store, sweep_dir, shapes_root, *grid),
        cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )
    checkpoint = sweep_dir / "1" / "weights" / "last.pt"
    deadline = time.time() + 400
    while not checkpoint.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.2)
    assert checkpoint.exists(), "the second cell never wrote a checkpoint"
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()

    rerun = run_sweep(store, tmp_path / "again", shapes_root, *grid)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    runs = cell_runs(store)
    assert completed_per_cell(runs).to_dict() == {"c3-pan-conv-s0": 1, "c3-slim-conv-s0": 1}
    resumed = runs[runs["run_name"] == "c3-slim-conv-s0"].iloc[0]
    assert int(resumed["tags.resumed_from_epoch"]) > 0
    steps = [step for step, _ in Store(f"sqlite:///{store}").metric_history(resumed["run_id"], "train/box_loss")]
    assert sorted(set(steps)) == [1, 2, 3, 4]


@pytest.mark.parametrize("launcher", ["joblib", "submitit_local"])
def test_parallel_launchers_log_every_cell_exactly_once(
    launcher: str, tmp_path: Path, shapes_root: Path
) -> None:
    store = tmp_path / "mlflow.db"
    # joblib: loader workers too (a loky job's default start method cannot start them)
    extra = ["hydra.launcher.n_jobs=2", "train.workers=1"] if launcher == "joblib" else [
        "hydra.launcher.timeout_min=10", "hydra.launcher.cpus_per_task=1",
        f"hydra.launcher.submitit_folder={tmp_path / 'submitit'}",
    ]
    proc = run_sweep(store, tmp_path / "sweep", shapes_root, f"hydra/launcher={launcher}", *extra)
    assert proc.returncode == 0, proc.stderr[-3000:]
    runs = cell_runs(store)
    assert completed_per_cell(runs).to_dict() == {
        "c3-pan-conv-s0": 1, "c3-slim-conv-s0": 1, "ghost-pan-conv-s0": 1, "ghost-slim-conv-s0": 1,
    }
    assert len(runs) == 4 and runs["tags.config_hash"].nunique() == 4
    assert len(read_results(tmp_path / "sweep")) == 4


def test_the_same_seed_gives_the_same_losses_and_map(tiny_config) -> None:
    from lightyolo import pipeline

    cfg = tiny_config("rerun=true", "train.epochs=2", "train.eval_interval=1")
    first = pipeline.run(cfg)
    second = pipeline.run(cfg)
    uri = cfg.mlflow.tracking_uri
    for key in ("train/box_loss", "train/obj_loss", "train/cls_loss"):
        assert Store(uri).metric_history(first.run_id, key) == Store(uri).metric_history(second.run_id, key)
    assert first.metrics["map50_95"] == second.metrics["map50_95"]
    assert first.metrics["map50"] == second.metrics["map50"]


def test_grid_size_counts_sweep_file_params_and_command_line_overrides() -> None:
    params = {"backbone": "c3,ghost", "neck": "pan,slim", "seed": "0,1,2"}
    assert count_cells([], params) == 12
    assert count_cells(["neck=pan", "operator=conv,involution"], params) == 12
    assert count_cells(["neck=pan", "seed=0"], params) == 2
    assert count_cells(["seed=range(0,5)"], {}) == 5


def test_progress_line_reports_the_cell_and_an_eta() -> None:
    assert progress_line(0, 8, 100.0, 130.0) == "cell 1/8, 0m30s elapsed"
    assert progress_line(2, 8, 100.0, 160.0) == "cell 3/8, 1m00s elapsed, ETA 3m00s"


def test_summary_lists_each_cell_and_the_cells_that_left_no_result() -> None:
    table = summary_table(
        [CellResult("c3-pan-conv-s0 #0", "completed", 0.5, 12.0, "r1"),
         CellResult("c3-pan-conv-s1 #1", "failed", None, 3.0, error="ValueError: boom")],
        expected=3,
    )
    assert "c3-pan-conv-s0 #0" in table and "0.5000" in table
    assert "failed" in table and "ValueError: boom" in table
    assert "1 cell(s) left no result" in table


def test_two_sweeps_started_in_the_same_second_get_different_directories() -> None:
    # Every sweep (smoke included) inherits conf/config.yaml's hydra.sweep.dir.
    first = compose_config([]).hydra.sweep.dir
    second = compose_config([]).hydra.sweep.dir
    assert first != second
