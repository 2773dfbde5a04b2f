"""The head as a config group (issue 26): `head=v5` is the model and identity every cell had
before; `head=v8` is another cell with its own recipe, trained, evaluated, exported and
benched end to end through the real Hydra config, MLflow store and ONNX Runtime."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from omegaconf import OmegaConf, open_dict

from lightyolo import identity, pipeline
from lightyolo.measure.params import count_parameters, part_parameter_counts
from lightyolo.measure.zoo import Cell, build_cell
from lightyolo.report.aggregate import Baseline
from lightyolo.report.collect import runs_table
from lightyolo.report.tables import factor_effects_section, one_factor_tables
from lightyolo.settings import run_name
from lightyolo.store.client import Store

from conftest import REPO, compose_config, tiny_overrides
from test_report_aggregate import metrics, raw_run, report_variants  # hand-built runs as MLflow gives them

# config_hash without code (the recipe hash) and variant_key of cells, computed with the code
# before the head group existed (commit 34705d1), dataset fingerprint "d0".
BEFORE_HEADS = {
    (): ("e6cb851df82a2f24", "7c285433b82710ba"),
    ("dataset=shapes_grid",): ("af9f47f52865bf8e", "a750d4fe9cb33895"),
    ("backbone=ghost", "neck=slim", "seed=2"): ("1c318879b0c8d8b2", "7558b560232a7c1e"),
    ("dataset=coco128",): ("2ba13928d2f3179d", "b66cb828e06cfe75"),
}

CELL_FILES = ("backbone/c2f.yaml", "neck/c2f_pan.yaml", "operator/conv.yaml", "head/v8.yaml")


def resolved(overrides: list[str]) -> dict[str, Any]:
    cfg = compose_config(overrides)
    with open_dict(cfg):
        del cfg["hydra"]
    return OmegaConf.to_container(cfg, resolve=True)


def recipe_hash(config: dict[str, Any]) -> str:
    return identity.config_hash(config, dataset_fingerprint="d0", weights_digest=None, code_identity=None)


@pytest.mark.parametrize("overrides", sorted(BEFORE_HEADS))
def test_the_default_head_keeps_the_identity_cells_had_before_heads_were_a_group(overrides) -> None:
    for head in ([], ["head=v5"]):
        config = resolved([*overrides, *head])
        assert config["head"]["_target_"] == "lightyolo.models.heads.v5.Detect"
        assert (recipe_hash(config), identity.variant_key(config)) == BEFORE_HEADS[overrides]


def test_head_v8_is_another_cell_with_yolov8s_loss_recipe_over_the_datasets() -> None:
    v5, v8 = resolved(["dataset=shapes_grid"]), resolved(["dataset=shapes_grid", "head=v8"])
    assert recipe_hash(v8) != recipe_hash(v5)
    assert v8["head"] == {"_target_": "lightyolo.models.heads.v8.AnchorFreeDetect", "reg_max": 16}
    # the head's gains replace shapes.yaml's YOLOv5 class gain (2.0); the dataset's lr stays
    assert {k: v8["train"]["loss"][k] for k in ("box", "cls", "dfl", "topk", "alpha", "beta")} == {
        "box": 7.5, "cls": 0.5, "dfl": 1.5, "topk": 10, "alpha": 0.5, "beta": 6.0,
    }
    assert v5["train"]["loss"]["cls"] == 2.0 and v8["train"]["lr0"] == v5["train"]["lr0"] == 0.03
    # the command line still wins over the head's recipe
    assert resolved(["head=v8", "train.loss.cls=1.0"])["train"]["loss"]["cls"] == 1.0


def test_run_names_gain_the_head_only_when_it_is_not_the_default() -> None:
    cell = {"backbone": "c3", "neck": "pan", "operator": "conv"}
    assert run_name(cell, 0) == run_name({**cell, "head": "v5"}, 0) == "c3-pan-conv-s0"
    assert run_name({**cell, "head": "v8"}, 2) == "c3-pan-conv-v8-s2"


def test_yolov8n_trains_evaluates_and_logs_box_cls_dfl_losses(tmp_path: Path) -> None:
    cfg = compose_config(tiny_overrides(tmp_path) + ["backbone=c2f", "neck=c2f_pan", "head=v8", "train.epochs=2"])
    result = pipeline.run(cfg, output_dir=tmp_path / "run")
    assert result.status == "completed"
    run = Store(cfg.mlflow.tracking_uri).runs_frame(cfg.experiment).iloc[0]
    assert run["run_name"] == "c2f-c2f_pan-conv-v8-s0"
    assert (run["tags.head"], run["params.head"]) == ("v8", "v8")
    for part in ("box_loss", "cls_loss", "dfl_loss"):
        assert run[f"metrics.train/{part}"] > 0
    assert "metrics.train/obj_loss" not in run or run.isna()["metrics.train/obj_loss"]
    assert 0 <= result.metrics["map50_95"] <= result.metrics["map50"] <= 1
    yolov8n_4_classes = build_cell(Cell(*(REPO / "conf" / f for f in CELL_FILES)), "n", nc=4)
    assert result.metrics["params"] == count_parameters(yolov8n_4_classes)


def test_a_smoke_sweep_over_both_heads_trains_benches_and_reports_the_head_as_a_factor(tmp_path: Path) -> None:
    store = tmp_path / "mlflow.db"
    command = [
        sys.executable, "-m", "lightyolo.run", "-m", "-cd", str(REPO / "sweeps"), "-cn", "smoke",
        f"mlflow.tracking_uri=sqlite:///{store}", f"hydra.sweep.dir={tmp_path / 'sweep'}",
        f"dataset.root={tmp_path / 'shapes'}", "backbone=c3", "neck=pan", "head=v5,v8", "train.epochs=1",
    ]
    proc = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    runs = Store(f"sqlite:///{store}").runs_frame("smoke")
    cells = runs[runs["tags.kind"].isna()] if "tags.kind" in runs else runs
    assert sorted(cells["run_name"]) == ["c3-pan-conv-s0", "c3-pan-conv-v8-s0"]
    assert (cells["tags.status"] == "completed").all()
    # the smoke sweep's bench stage: clock auto = process CPU time at 1 thread on the CPU
    for method in ("torch_cpu_t1_b1_64_cputime", "onnxruntime_cpu_t1_b1_64_cputime"):
        assert (cells[f"metrics.bench/{method}/median_ms"] > 0).all()

    report = subprocess.run(
        [sys.executable, "-m", "lightyolo.report", "experiment=smoke", f"tracking_uri=sqlite:///{store}",
         f"out={tmp_path / 'reports'}"],
        cwd=REPO, capture_output=True, text=True, timeout=300,
    )
    assert report.returncode == 0, report.stderr[-3000:]
    text = (tmp_path / "reports" / "smoke" / "ablation.md").read_text()
    # the two heads are one recipe, each with its own loss, compared in a one-factor table
    assert "### Effect of the head (backbone c3, neck pan, operator conv;" in text
    heads_line = next(line for line in text.splitlines() if line.startswith("- **Heads**"))
    assert "**v5**: `train.loss.anchor_t=4.0, train.loss.box=0.05, train.loss.cls=2.0," in heads_line
    assert "train.loss.box=7.5, train.loss.cls=0.5, train.loss.dfl=1.5" in heads_line
    assert "| c3/pan/conv/v8 |" in text and "| c3/pan/conv |" in text  # the head names the row
    assert "Several recipes" not in text


USER_HEAD = '''"""My head: YOLOv8's anchor-free head with YOLO11's lighter class branch."""

from torch import nn

from lightyolo.models.heads.v8 import AnchorFreeDetect
from lightyolo.models.layers import Conv


class LightClassHead(AnchorFreeDetect):
    """Depthwise 3×3 then pointwise 1×1, twice, before the class logits."""

    def class_branch(self, in_channels, width):
        return nn.Sequential(
            nn.Sequential(Conv(in_channels, in_channels, 3, groups=in_channels), Conv(in_channels, width, 1)),
            nn.Sequential(Conv(width, width, 3, groups=width), Conv(width, width, 1)),
            nn.Conv2d(width, self.nc, 1),
        )


class NoLossHead(nn.Module):
    def __init__(self, nc, in_channels, strides):
        super().__init__()
        self.nc = nc
'''
USER_HEAD_YAML = """# @package _global_
head:
  _target_: my_heads.{name}
train:
  loss: {{box: 7.5, cls: 0.5, dfl: 1.5, topk: 10, alpha: 0.5, beta: 6.0}}
"""


@pytest.fixture(scope="module")
def user_head_project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A user's folder outside the checkout: my_heads.py and configs/head/{light,broken}.yaml."""
    project = tmp_path_factory.mktemp("user") / "heads"
    (project / "configs" / "head").mkdir(parents=True)
    (project / "my_heads.py").write_text(USER_HEAD)
    (project / "configs" / "head" / "light.yaml").write_text(USER_HEAD_YAML.format(name="LightClassHead"))
    (project / "configs" / "head" / "broken.yaml").write_text(USER_HEAD_YAML.format(name="NoLossHead"))
    return project


def user_command(project: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(project), "LIGHTYOLO_CONFIG_PATH": str(project / "configs"),
           "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "lightyolo", *args], cwd=project, env=env,
                          capture_output=True, text=True, timeout=600)


def test_a_users_own_head_joins_the_zoo_and_trains(user_head_project: Path, tmp_path: Path) -> None:
    zoo = user_command(user_head_project, "zoo", "heads=light", "check=false", "img=64", "format=csv")
    assert zoo.returncode == 0, zoo.stderr[-2000:]
    rows = pd.read_csv(io.StringIO(zoo.stdout)).set_index(["backbone", "neck", "operator"])
    light = rows.loc[("c3", "pan", "conv")]
    assert light["head"] == "light"
    v8_head = part_parameter_counts(build_cell(Cell(*(REPO / "conf" / f for f in (
        "backbone/c3.yaml", "neck/pan.yaml", "operator/conv.yaml", "head/v8.yaml"))), "n"))["head"]
    assert 0 < light["head_params"] < v8_head
    run = user_command(user_head_project, "run", "head=light", *tiny_overrides(tmp_path))
    assert run.returncode == 0, run.stderr[-2000:]
    done = Store(f"sqlite:///{tmp_path / 'mlflow.db'}").runs_frame("lightyolo").iloc[0]
    assert (done["run_name"], done["tags.status"]) == ("c3-pan-conv-light-s0", "completed")
    assert done["metrics.train/dfl_loss"] > 0


def test_a_head_without_a_loss_is_refused_with_one_line_naming_it(user_head_project: Path, tmp_path: Path) -> None:
    run = user_command(user_head_project, "run", "head=broken", *tiny_overrides(tmp_path))
    assert run.returncode == 1
    errors = [line for line in run.stderr.splitlines() if line.startswith("error:")]
    assert errors == ["error: conf/head: NoLossHead does not declare stride (see lightyolo/models/heads/__init__.py)"]


def test_the_report_estimates_whether_a_backbones_effect_depends_on_the_head() -> None:
    """backbone {c3, ghost} × head {v5, v8}, 3 seeds, each head with its own loss: ghost costs
    1 pt on the v5 head and 4 pts on the v8 head — an interaction the report must find."""
    rng = np.random.default_rng(7)
    rows, start = [], 0
    for backbone in ("c3", "ghost"):
        for head, loss in (("v5", {"box": "0.05", "cls": "2.0"}), ("v8", {"box": "7.5", "cls": "0.5", "dfl": "1.5"})):
            for seed in range(3):
                value = 0.30 + 0.05 * (head == "v8") - (0.01 if head == "v5" else 0.04) * (backbone == "ghost")
                start += 1
                row = raw_run(f"{backbone}/pan/conv", seed, "completed", start,
                              **metrics(value + rng.normal(0, 0.0003), 4.0, 10.0, 2e6))
                row.update({"tags.head": head, **{f"params.train.loss.{k}": v for k, v in loss.items()}})
                rows.append(row)
    runs = runs_table(pd.DataFrame(rows))
    assert runs["recipe"].nunique() == 1  # the loss belongs to the head, not to the recipe
    variants = report_variants(runs)
    text = factor_effects_section(runs, variants, Baseline("c3", "pan", "conv"))
    assert "### backbone × head" in text
    assert "**head v8** vs v5: gains 3.5 pts" in text  # averaged over the backbones
    assert "**backbone × head interaction**" in text
    # the interaction spelled out as simple effects with their intervals (the full factorial model)
    assert "backbone ghost at head v5: -1.0 pts [" in text and "backbone ghost at head v8: -4.0 pts [" in text
    tables = one_factor_tables(variants, Baseline("c3", "pan", "conv"))
    assert "### Effect of the head (backbone c3, neck pan, operator conv;" in tables
    # a run logged before the head group reads as v5
    old = runs_table(pd.DataFrame([raw_run("c3/pan/conv", 0, "completed", 1, **metrics(0.3, 4.0, 10.0, 2e6))]))
    assert old["head"].tolist() == ["v5"]
