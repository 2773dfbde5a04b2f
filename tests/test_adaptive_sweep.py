"""Issue 29: the adaptive-seeds driver (lightyolo.adaptive_sweep): which seeds it launches
and why, what it prints, and how `python -m lightyolo.sweep NAME seeds=adaptive` reads its
options and the grid of a real sweep file.

The decision loop is driven by a seeded simulation of mAP per (cell, seed) — a shared seed
effect plus cell noise — standing in for training (the real trainer runs sweeps: the slow
test at the end and benchmarks/adaptive_seeds.py do that).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from lightyolo.adaptive_sweep import Cell, adaptive_seeds, grid_cells, parse_options, summary
from lightyolo.configs import sweep_file
from lightyolo.report.sequential import SequentialDesign

BASE = Cell("c3", "pan", "conv")
CLEAR = Cell("ghost", "pan", "conv")  # +8 pts: decided at the first look
CLOSE = Cell("mobilenetv3", "pan", "conv")  # +1 pt with noise: needs more seeds


def simulated_training(effects: dict[Cell, float], calls: list) -> callable:
    shared = np.random.default_rng(0).normal(0, 2.0, 50)  # seed effect shared by every cell
    noise = np.random.default_rng(1)

    def train(cell: Cell, seeds: list[int]) -> dict[int, float]:
        calls.append((cell, tuple(seeds)))
        return {s: 60 + effects[cell] + shared[s] + noise.normal(0, 1.0) for s in seeds}
    return train


def test_extra_seeds_go_only_to_undecided_comparisons_and_say_why() -> None:
    calls, lines = [], []
    design = SequentialDesign(first=3, cap=6, margin=2.0, family=2)
    outcomes, cells = adaptive_seeds([CLEAR, CLOSE], BASE, design,
                                     simulated_training({BASE: 0, CLEAR: 8, CLOSE: 1}, calls),
                                     log=lines.append)
    by_cell = {o.variant: o for o in outcomes}
    assert by_cell[CLEAR].decision == "better" and by_cell[CLEAR].seeds == [0, 1, 2]
    assert len(by_cell[CLOSE].seeds) > 3  # the close one got extra seeds
    extra = [c for c in calls if c[1][0] >= 3]
    assert all(cell in (BASE, CLOSE) for cell, _ in extra)  # never the decided one
    assert all(len(seeds) == 1 for _, seeds in extra)
    launched = [line for line in lines if line.startswith("launching seed")]
    assert len(launched) == len(by_cell[CLOSE].seeds) - 3
    assert "launching seed 3 of mobilenetv3/pan/conv (and of the baseline c3/pan/conv): Δ" in launched[0]
    assert "undecided" in launched[0]
    assert cells == sum(len(seeds) for _, seeds in calls)
    text = summary(outcomes, cells, design)
    assert f"cells used: {cells}, trained now or kept from the store (a fixed 5 seeds per cell: 15" in text


def test_options_and_the_grid_of_a_real_sweep_file() -> None:
    options = parse_options(["seeds=adaptive", "seeds.cap=6", "train.epochs=2",
                             "seeds.baseline=ghost/pan/conv"], family=3)
    assert options.design.cap == 6 and options.design.first == 3 and options.design.family == 3
    assert options.baseline == Cell("ghost", "pan", "conv") and options.overrides == ["train.epochs=2"]
    with pytest.raises(ValueError, match="seeds.nope: unknown"):
        parse_options(["seeds.nope=1"])
    with pytest.raises(ValueError, match="adaptive seeds choose the seeds"):
        parse_options(["seed=0,1"])
    cells = grid_cells(sweep_file("lightweight"), ["neck=pan", "operator=conv"])
    assert [c.backbone for c in cells] == ["c3", "ghost", "mobilenetv3", "shufflenetv2"]
    # lightweight_slurm inherits its grid from lightweight
    assert len(grid_cells(sweep_file("lightweight_slurm"), [])) == 16
    # smoke sweeps backbone and neck only: the operator keeps conf/config.yaml's default
    assert {c.operator for c in grid_cells(sweep_file("smoke"), [])} == {"conv"}


@pytest.mark.slow
def test_the_cli_runs_an_adaptive_smoke_sweep(tmp_path: Path) -> None:
    """~2 min: the smoke grid's c3/ghost × pan, 2-3 seeds each, real training and MLflow."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run(
        [sys.executable, "-m", "lightyolo.sweep", "smoke", "seeds=adaptive", "seeds.first=2",
         "seeds.cap=3", "neck=pan", "train.threads=1", "train.workers=0", "experiment=adaptive"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "cells used:" in result.stdout and "ghost/pan/conv" in result.stdout
    assert "report: python -m lightyolo.report seeds=adaptive" in result.stdout
