"""The named sweeps' recipes: the lightweight grid trains on the grid recipe of the synthetic
dataset, and naming another dataset replaces that recipe with the dataset's own."""

from __future__ import annotations

import subprocess
import sys

from omegaconf import DictConfig, OmegaConf

from conftest import REPO, compose_config


def sweep_job(name: str, *overrides: str) -> DictConfig:
    """The job config a cell of sweep `name` gets, as the real CLI composes it."""
    proc = subprocess.run(
        [sys.executable, "-m", "lightyolo.run", "-cd", "sweeps", "-cn", name, *overrides, "--cfg", "job"],
        cwd=REPO, capture_output=True, text=True, timeout=120, check=True,
    )
    return OmegaConf.create(proc.stdout)


def test_the_lightweight_grid_uses_the_longer_shapes_recipe_and_its_larger_splits() -> None:
    grid, default = sweep_job("lightweight"), compose_config([])
    assert grid.dataset.name == default.dataset.name == "shapes"
    assert grid.dataset.num_train == 2 * default.dataset.num_train
    assert grid.dataset.num_test > default.dataset.num_test
    assert grid.train.epochs > default.train.epochs
    assert grid.train.lr0 < default.train.lr0
    # what it leaves alone comes from the default job's recipe
    assert grid.train.img_size == default.train.img_size and grid.train.schedule == default.train.schedule
    assert grid.train.augment.mosaic == default.train.augment.mosaic == 0.0


def test_naming_another_dataset_replaces_the_grid_recipe() -> None:
    grid = sweep_job("lightweight", "dataset=coco128")
    assert grid.dataset.name == "coco128" and "num_train" not in grid.dataset
    assert (grid.train.epochs, grid.train.img_size, grid.train.lr0) == (100, 640, 0.01)
