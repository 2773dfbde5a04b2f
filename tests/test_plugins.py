"""Plugins without forking: the README tutorial's own files (tests/plugin_tutorial: a backbone
and an operator in the user's module, their yamls and a named sweep), copied to a directory
outside the repository, joined through LIGHTYOLO_CONFIG_PATH or Hydra's hydra.searchpath.

Every command runs as a user would run it, in a subprocess started outside the checkout."""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch
from torch import nn
from torch.nn import functional as F

from lightyolo.measure.zoo import Cell, build_cell, zoo_row
from lightyolo.configs import config_dir
from lightyolo.models.backbones.c3 import C3Backbone
from lightyolo.models.layers import scale_width
from lightyolo.models.operators.conv import ConvOperator
from lightyolo.run import unknown_choice_error
from lightyolo.store.client import Store

from conftest import REPO, tiny_overrides

TUTORIAL = Path(__file__).parent / "plugin_tutorial"


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The user's folder: my_modules.py and configs/{backbone,operator,sweeps}/."""
    directory = tmp_path_factory.mktemp("user") / "myproject"
    shutil.copytree(TUTORIAL, directory, ignore=shutil.ignore_patterns("__pycache__"))
    assert REPO not in directory.parents
    return directory


def user_env(project: Path, *, config_path: bool = True) -> dict[str, str]:
    """PYTHONPATH=<project> (before any path this test run has) and LIGHTYOLO_CONFIG_PATH=<project>/configs."""
    env = {k: v for k, v in os.environ.items() if k != "LIGHTYOLO_CONFIG_PATH"}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(project), os.environ.get("PYTHONPATH")) if p)
    env["OMP_NUM_THREADS"] = "1"
    if config_path:
        env["LIGHTYOLO_CONFIG_PATH"] = str(project / "configs")
    return env


def lightyolo(project: Path, *args: str, config_path: bool = True) -> subprocess.CompletedProcess:
    """`lightyolo ARGS` (as `python -m lightyolo`, the console script's module), from the project's parent."""
    return subprocess.run(
        [sys.executable, "-m", "lightyolo", *args], cwd=project.parent, env=user_env(project, config_path=config_path),
        capture_output=True, text=True, timeout=600,
    )


def ok(proc: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    assert proc.returncode == 0, f"{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}"
    return proc


def plain_backbone_params(width_multiple: float = 0.25) -> int:
    """my_modules.PlainBackbone's parameters by hand: per stage a stride-2 dense 3×3 Conv and
    the operator's depthwise 3×3 Conv, each with a BatchNorm (weight and bias per channel)."""
    widths = [scale_width(64 * 2**i, width_multiple) for i in range(5)]
    return sum(c_in * c * 9 + 2 * c + c * 9 + 2 * c for c_in, c in zip([3, *widths], widths))


def test_the_zoo_lists_the_plugin_variants_with_exact_parameter_counts(project: Path) -> None:
    zoo = pd.read_csv(io.StringIO(ok(lightyolo(project, "zoo", "check=false", "img=64", "format=csv")).stdout))
    rows = zoo.set_index(["backbone", "neck", "operator"])
    assert len(rows) == 6 * 3 * 3  # c2f, c3, ghost, mobilenetv3, plain, shufflenetv2 × c2f_pan, pan, slim × conv, dilated, involution
    baseline = rows.loc[("c3", "pan", "conv")]
    # A dilated conv has the weights and multiply-adds of the plain one: YOLOv5n's exact counts.
    dilated = rows.loc[("c3", "pan", "dilated")]
    assert dilated["params"] == baseline["params"] == 1_872_157
    assert dilated["gflops"] == baseline["gflops"]
    plain = rows.loc[("plain", "pan", "conv")]
    assert plain["backbone_params"] == plain_backbone_params() == 398_560
    assert plain["neck_params"] == baseline["neck_params"]  # same out_channels (64, 128, 256) at n
    assert plain["params"] == plain_backbone_params() + baseline["neck_params"] + baseline["head_params"]
    assert plain["strides"] == "8/16/32"


def test_an_unknown_choice_lists_the_plugin_options_among_the_valid_ones(project: Path) -> None:
    proc = lightyolo(project, "run", "backbone=nope")
    assert proc.returncode == 2
    assert proc.stderr.strip() == (
        "error: unknown backbone 'nope' in 'backbone=nope'; "
        "valid backbone options: c2f, c3, ghost, mobilenetv3, plain, shufflenetv2"
    )


def test_the_choice_validation_takes_its_options_from_every_config_dir(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    configs = project / "configs"
    monkeypatch.delenv("LIGHTYOLO_CONFIG_PATH", raising=False)
    assert "valid operator options: conv, involution" in unknown_choice_error(["operator=dilated"])
    assert unknown_choice_error([f"hydra.searchpath=[file://{configs}]", "operator=dilated", "backbone=plain"]) is None
    monkeypatch.setenv("LIGHTYOLO_CONFIG_PATH", os.pathsep.join([str(configs), ""]))
    assert unknown_choice_error(["operator=conv,dilated", "backbone=plain"]) is None
    assert unknown_choice_error(["operator=nope"]).endswith("valid operator options: conv, dilated, involution")
    monkeypatch.setenv("LIGHTYOLO_CONFIG_PATH", str(project / "missing"))
    assert unknown_choice_error(["operator=conv"]) == f"error: LIGHTYOLO_CONFIG_PATH: '{project / 'missing'}' is not a directory"


@pytest.fixture(scope="module")
def swept(project: Path) -> Path:
    """`lightyolo sweep mine` (the plugin's named sweep) on the dilated operator, tiny sizes:
    the built-in c3 and the plugin's plain backbone."""
    work = project.parent
    ok(lightyolo(project, "sweep", "mine", "operator=dilated", f"hydra.sweep.dir={work / 'sweep'}", *tiny_overrides(work)))
    return work


def test_the_plugins_named_sweep_runs_its_cells_beside_c3(swept: Path) -> None:
    runs = Store(f"sqlite:///{swept / 'mlflow.db'}").runs_frame("mine")
    runs = runs[runs["tags.kind"].isna()]  # the cells, not the sweep's parent run
    cells = sorted(zip(runs["tags.backbone"], runs["tags.operator"], runs["tags.status"]))
    assert cells == [("c3", "dilated", "completed"), ("plain", "dilated", "completed")]
    assert set(runs["params.backbone._target_"]) == {"lightyolo.models.backbones.c3.C3Backbone", "my_modules.PlainBackbone"}


def test_the_report_has_the_plugin_rows(project: Path, swept: Path) -> None:
    ok(lightyolo(project, "report", "experiment=mine", f"tracking_uri=sqlite:///{swept / 'mlflow.db'}",
                 f"out={swept / 'reports'}"))
    variants = pd.read_csv(swept / "reports" / "mine" / "ablation.csv")
    rows = sorted(map(tuple, variants[["backbone", "neck", "operator", "status"]].values.tolist()))
    assert rows == [("c3", "pan", "dilated", "completed"), ("plain", "pan", "dilated", "completed")]
    # Trained for the 4 shapes classes: the plain cell is c3's with its backbone swapped.
    c3_backbone = sum(p.numel() for p in C3Backbone(0.25, 0.33, ConvOperator()).parameters())
    params = variants.set_index("backbone")["params_mean"]
    assert params["plain"] - plain_backbone_params() == params["c3"] - c3_backbone


def test_hydra_searchpath_alone_runs_a_plugin_cell(project: Path, tmp_path: Path) -> None:
    searchpath = f"hydra.searchpath=[file://{project / 'configs'}]"
    ok(lightyolo(project, "run", searchpath, "backbone=plain", "operator=dilated", "experiment=searchpath",
                 *tiny_overrides(tmp_path), config_path=False))
    runs = Store(f"sqlite:///{tmp_path / 'mlflow.db'}").runs_frame("searchpath")
    assert runs[["tags.backbone", "tags.operator", "tags.status"]].values.tolist() == [["plain", "dilated", "completed"]]


class Blur(nn.Module):
    """A leaf doing its multiply-adds in functional code: a 3×3 mean (9 per output element)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.avg_pool2d(x, 3, 1, 1, count_include_pad=False)

    def functional_macs(self, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> int:
        return 9 * output.numel()


class BlurredConv:
    """An operator whose op ends in `Blur`: its FLOPs rule comes with it (measure/flops.py's protocol)."""

    def __call__(self, channels: int, kernel_size: int, *, depthwise: bool, act: bool | nn.Module = True) -> nn.Module:
        return nn.Sequential(ConvOperator()(channels, kernel_size, depthwise=depthwise, act=act), Blur())


def test_a_user_modules_flops_rule_is_counted_by_both_counters(tmp_path: Path) -> None:
    (tmp_path / "blurred.yaml").write_text(f"_target_: {__name__}.BlurredConv\n")
    conf = config_dir()
    cell = Cell(conf / "backbone" / "c3.yaml", conf / "neck" / "pan.yaml", tmp_path / "blurred.yaml")
    conv = zoo_row(Cell(cell.backbone, cell.neck, conf / "operator" / "conv.yaml"), "n", 256)
    blurred = zoo_row(cell, "n", 256)
    # The blur's multiply-adds, counted here by hooks on a forward of the built model.
    model, macs = build_cell(cell, "n"), []
    for module in model.modules():
        if isinstance(module, Blur):
            module.register_forward_hook(lambda m, inputs, output: macs.append(9 * output.numel()))
    with torch.no_grad():
        model.eval()(torch.zeros(1, 3, 256, 256))
    assert blurred["params"] == conv["params"]
    assert blurred["gflops"] - conv["gflops"] == pytest.approx(2 * sum(macs) / 1e9, abs=0.002)
    assert blurred["gflops_check"] - conv["gflops_check"] == pytest.approx(2 * sum(macs) / 1e9, abs=0.002)
