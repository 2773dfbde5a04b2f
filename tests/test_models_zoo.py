"""Acceptance of the model zoo: all 30 backbone × neck × operator cells build, run, train and measure.

Figures pinned: the reference sizes of YOLOv5n (c3/pan/conv, 1,872,157 params), Ghost + plain
PAN at n (1,395,145) and C3 + slim-neck at n (1,669,693) from docs/references.md, read back from
`python -m lightyolo.zoo` itself.
"""

from __future__ import annotations

import io
import math
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from lightyolo.zoo import main
from lightyolo.measure.zoo import Cell, build_cell, discover_cells, format_table
from lightyolo.train.loss import YoloLoss
from lightyolo.train.optim import build_optimizer

REPO = Path(__file__).resolve().parents[1]
from conftest import COCO128
CELLS = discover_cells(REPO / "conf")
CELL_IDS = [cell.name for cell in CELLS]
NC = 80
# (height, width): square sizes and a non-square multiple of 32.
EVAL_SIZES = [(320, 320), (640, 640), (256, 416)]
REFERENCE_PARAMS_N = {"c3/pan/conv": 1_872_157, "ghost/pan/conv": 1_395_145, "c3/slim/conv": 1_669_693}
TRAIN_IMAGES = ("000000000009", "000000000025")
TRAIN_SIZE = 96
TRAIN_STEPS = 12
# YOLOv5's lr0 barely moves the loss in 12 steps; 10× shows the descent on every cell.
TRAIN_LR = 0.1


def test_the_grid_is_5_backbones_by_3_necks_by_2_operators() -> None:
    assert len(CELLS) == 30
    assert {cell.names[0] for cell in CELLS} == {"c3", "ghost", "shufflenetv2", "mobilenetv3", "c2f"}
    assert {cell.names[1] for cell in CELLS} == {"pan", "slim", "c2f_pan"}
    assert {cell.names[2] for cell in CELLS} == {"conv", "involution"}


@pytest.mark.parametrize("scale", ["n", "s"])
@pytest.mark.parametrize("cell", CELLS, ids=CELL_IDS)
def test_eval_forward_gives_85_channel_maps_at_strides_8_16_32(cell: Cell, scale: str) -> None:
    model = build_cell(cell, scale, NC).eval()
    for height, width in EVAL_SIZES:
        with torch.inference_mode():
            decoded, raw = model(torch.zeros(1, 3, height, width))
        assert [tuple(level.shape) for level in raw] == [
            (1, 3, height // stride, width // stride, NC + 5) for stride in (8, 16, 32)
        ], f"{height}x{width}"
        cells = sum(3 * (height // stride) * (width // stride) for stride in (8, 16, 32))
        assert tuple(decoded.shape) == (1, cells, NC + 5)
        assert torch.isfinite(decoded).all()


@pytest.mark.parametrize("scale", ["n", "s"])
@pytest.mark.parametrize("cell", CELLS, ids=CELL_IDS)
def test_training_backward_gives_finite_gradients_on_every_parameter(cell: Cell, scale: str) -> None:
    torch.manual_seed(0)
    model = build_cell(cell, scale, NC).train()
    raw = model(torch.rand(2, 3, 64, 96))
    sum(level.float().square().mean() for level in raw).backward()
    missing = [name for name, p in model.named_parameters() if p.requires_grad and p.grad is None]
    not_finite = [name for name, p in model.named_parameters() if p.grad is not None and not p.grad.isfinite().all()]
    assert missing == [], f"parameters the forward never uses: {missing[:5]}"
    assert not_finite == []
    stem = next(model.backbone.parameters())
    assert stem.grad.abs().sum() > 0
    assert all(conv.weight.grad.abs().sum() > 0 for conv in model.head.m)


def coco128_batch(size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Two real coco128 images squashed to size×size (normalised boxes are unchanged) and their targets."""
    images, targets = [], []
    for index, stem in enumerate(TRAIN_IMAGES):
        with Image.open(COCO128 / "images" / "train2017" / f"{stem}.jpg") as image:
            pixels = np.asarray(image.convert("RGB").resize((size, size), Image.BILINEAR))
        images.append(torch.from_numpy(pixels.copy()).permute(2, 0, 1).float() / 255)
        labels = np.loadtxt(COCO128 / "labels" / "train2017" / f"{stem}.txt", ndmin=2)
        targets.append(np.hstack((np.full((len(labels), 1), index), labels)))
    return torch.stack(images), torch.from_numpy(np.vstack(targets)).float()


@pytest.fixture(scope="module")
def train_batch() -> tuple[torch.Tensor, torch.Tensor]:
    return coco128_batch(TRAIN_SIZE)


@pytest.mark.shared("data/coco128")
@pytest.mark.parametrize("cell", CELLS, ids=CELL_IDS)
def test_a_few_sgd_steps_on_two_coco128_images_lower_the_loss(
    cell: Cell, train_batch: tuple[torch.Tensor, torch.Tensor]
) -> None:
    images, targets = train_batch
    torch.manual_seed(0)
    model = build_cell(cell, "n", NC).train()
    loss_fn = YoloLoss(model.head, img_size=TRAIN_SIZE)
    optimizer = build_optimizer(model, lr0=TRAIN_LR)
    losses = []
    for _ in range(TRAIN_STEPS):
        loss, _ = loss_fn(model(images), targets)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert all(math.isfinite(value) for value in losses)
    # Means of 3 steps: a single noisy step at the end should not decide it.
    first, last = np.mean(losses[:3]), np.mean(losses[-3:])
    assert last < 0.98 * first, f"losses {np.round(losses, 3).tolist()}"


@pytest.fixture(scope="module")
def zoo_csv_n_320() -> pd.DataFrame:
    result = subprocess.run(
        [sys.executable, "-m", "lightyolo.zoo", "scale=n", "img=320", "format=csv"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    return pd.read_csv(io.StringIO(result.stdout))


def test_cli_csv_has_one_row_per_cell_with_exact_reference_params(zoo_csv_n_320: pd.DataFrame) -> None:
    table = zoo_csv_n_320
    assert len(table) == 30
    assert {"scale", "backbone", "neck", "operator", "img_size", "params", "gflops"} <= set(table.columns)
    assert (table["scale"] == "n").all() and (table["img_size"] == 320).all()
    assert (table["strides"] == "8/16/32").all()
    assert table["params"].dtype == np.int64
    assert (table["params"] == table["backbone_params"] + table["neck_params"] + table["head_params"]).all()
    names = table["backbone"] + "/" + table["neck"] + "/" + table["operator"]
    assert sorted(names) == sorted(CELL_IDS)
    params = dict(zip(names, table["params"]))
    assert {name: params[name] for name in REFERENCE_PARAMS_N} == REFERENCE_PARAMS_N
    # YOLOv5n at 320 (docs/references.md), counted on the full input.
    assert dict(zip(names, table["gflops"]))["c3/pan/conv"] == pytest.approx(1.12, abs=0.005)


@pytest.mark.parametrize("cell", CELL_IDS)
def test_thop_and_flop_counter_gflops_agree_within_5_percent(cell: str, zoo_csv_n_320: pd.DataFrame) -> None:
    table = zoo_csv_n_320
    row = table[table["backbone"] + "/" + table["neck"] + "/" + table["operator"] == cell].iloc[0]
    assert row["gflops"] > 0
    assert row["gflops"] == pytest.approx(row["gflops_check"], rel=0.05)


def test_a_new_variant_yaml_joins_the_grid_with_no_edit(tmp_path: Path) -> None:
    conf = tmp_path / "conf"
    shutil.copytree(REPO / "conf", conf)
    (conf / "neck" / "pan_copy.yaml").write_text("_target_: lightyolo.models.necks.pan.PANNeck\n")
    cells = discover_cells(conf)
    assert len(cells) == 5 * 4 * 2
    new_cell = next(cell for cell in cells if cell.name == "c3/pan_copy/conv")
    assert sum(p.numel() for p in build_cell(new_cell, "n").parameters()) == 1_872_157


def test_a_variant_yaml_without_target_is_refused_naming_the_file(tmp_path: Path) -> None:
    conf = tmp_path / "conf"
    shutil.copytree(REPO / "conf", conf)
    broken = conf / "operator" / "broken.yaml"
    broken.write_text("kernel_size: 3\n")
    cell = next(cell for cell in discover_cells(conf) if cell.operator == broken)
    with pytest.raises(ValueError, match=r"broken\.yaml: expected a mapping with a `_target_`"):
        build_cell(cell, "n")


def test_an_empty_config_group_is_refused_naming_the_folder(tmp_path: Path) -> None:
    for group in ("backbone", "neck"):
        (tmp_path / group).mkdir()
        (tmp_path / group / "x.yaml").write_text("_target_: x\n")
    (tmp_path / "operator").mkdir()
    with pytest.raises(FileNotFoundError, match=r"operator: no \*\.yaml variant"):
        discover_cells(tmp_path)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["img=300"], "img=300: expected a positive multiple of 32"),
        (["scale=x"], "scale='x': invalid choice"),
        (["format=tsv"], "format='tsv': invalid choice"),
        (["nc=0"], "nc=0: expected >= 1"),
    ],
)
def test_cli_refuses_bad_values_with_one_error_line(argv: list[str], message: str, capsys) -> None:
    assert main(argv) == 2
    error_lines = [line for line in capsys.readouterr().err.splitlines() if "error:" in line]
    assert len(error_lines) == 1 and message in error_lines[0]


def test_markdown_table_has_a_header_and_one_line_per_row() -> None:
    row = {
        "scale": "n", "backbone": "c3", "neck": "pan", "operator": "conv", "img_size": 640,
        "params": 1_872_157, "params_m": 1.872, "backbone_params_m": 1.046, "neck_params_m": 0.711,
        "head_params_m": 0.115, "gflops": 4.47, "gflops_check": None, "strides": "8/16/32",
    }
    lines = format_table([row, {**row, "neck": "slim"}], "markdown").splitlines()
    assert len(lines) == 4
    assert lines[0].startswith("| backbone | neck | operator | params (M) | GFLOPs |")
    assert lines[2] == "| c3 | pan | conv | 1.872 | 4.470 | — | 1.046 | 0.711 | 0.115 | 8/16/32 |"
    with pytest.raises(ValueError, match="format: expected one of"):
        format_table([row], "html")  # type: ignore[arg-type]
