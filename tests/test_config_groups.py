"""The recipe groups (conf/train/, eval/, bench/, tracking/): a recipe is chosen like a
backbone, a dataset may pick its own, a run records which, and a user's own recipe from
LIGHTYOLO_CONFIG_PATH is one more option (docs/configuration.md)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from lightyolo.settings import resolve

from conftest import REPO, compose_config


@pytest.mark.parametrize(("overrides", "recipe", "epochs", "lr0"), [
    ([], "shapes", 20, 0.08),                                  # the default job: shapes picks its recipe
    (["dataset=shapes_grid"], "grid", 60, 0.03),               # the grid's dataset picks the grid recipe
    (["dataset=coco128"], "scratch_low", 100, 0.01),           # a real dataset: YOLOv5's own
    (["train=scratch_low"], "scratch_low", 100, 0.01),         # the command line wins over the dataset
    (["dataset=coco128", "train=grid"], "grid", 60, 0.03),
])
def test_a_recipe_is_chosen_like_a_backbone(overrides, recipe, epochs, lr0) -> None:
    cfg = compose_config(overrides)
    assert cfg.hydra.runtime.choices.train == recipe
    assert (cfg.train.epochs, cfg.train.lr0) == (epochs, lr0)
    assert cfg.train.threads == "auto" and cfg.train.workers == "auto"  # execution keys stay apart
    assert resolve(cfg).run.recipe == recipe


def test_the_deployment_bench_times_every_builtin_runtime_at_fp32_and_int8() -> None:
    stage = compose_config(["bench=deployment"]).bench.stage
    assert list(stage.runtimes) == ["torch", "onnxruntime", "openvino", "ncnn"]
    assert list(stage.precisions) == ["fp32", "int8"]
    assert stage.rounds == compose_config([]).bench.stage.rounds  # the rest as the default


def test_the_server_tracking_reads_mlflows_own_environment_variable(monkeypatch) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://tracking.example:5000")
    assert resolve(compose_config(["tracking=server"])).run.tracking_uri == "http://tracking.example:5000"
    assert compose_config([]).mlflow.tracking_uri is None  # local: SQLite beside the launch dir


def test_the_server_tracking_without_its_variable_stops_in_one_line(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"} | {"PYTHONPATH": str(REPO)}
    shown = subprocess.run([sys.executable, "-m", "lightyolo.run", "tracking=server"], cwd=tmp_path, env=env,
                           capture_output=True, text=True, timeout=120)
    assert shown.returncode != 0
    errors = [line for line in shown.stderr.splitlines() if line.strip()]
    assert errors == ["error: mlflow.tracking_uri=env:MLFLOW_TRACKING_URI: environment variable MLFLOW_TRACKING_URI "
                      "is not set (expected the tracking server's URL, e.g. http://host:5000)"]
    assert not (tmp_path / "mlflow.db").exists()  # nothing was written to a store it did not mean


def test_a_users_own_recipe_from_the_config_path(tmp_path: Path) -> None:
    recipe = tmp_path / "conf" / "train" / "long.yaml"
    recipe.parent.mkdir(parents=True)
    recipe.write_text("defaults:\n  - scratch_low\n  - _self_\nepochs: 300\n")
    env = {**os.environ, "LIGHTYOLO_CONFIG_PATH": str(tmp_path / "conf"), "PYTHONPATH": str(REPO)}
    shown = subprocess.run([sys.executable, "-m", "lightyolo.run", "train=long", "dataset=coco128", "--cfg", "job"],
                           cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert shown.returncode == 0, shown.stderr[-500:]
    train = yaml.safe_load(shown.stdout)["train"]
    assert (train["epochs"], train["lr0"]) == (300, 0.01)
    unknown = subprocess.run([sys.executable, "-m", "lightyolo.run", "train=nope"], cwd=tmp_path, env=env,
                             capture_output=True, text=True, timeout=120)
    assert unknown.returncode != 0
    assert "unknown train 'nope'" in unknown.stderr and "long" in unknown.stderr
