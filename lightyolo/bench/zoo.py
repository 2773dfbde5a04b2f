"""The model zoo: every backbone × neck × operator cell found in `conf/`, built and measured.

The grid is discovered, never listed: each yaml in `conf/backbone/`, `conf/neck/` and
`conf/operator/` (and the same folders of every LIGHTYOLO_CONFIG_PATH directory) is one
option, so a new variant's yaml shows up in the table with no edit.
Each row gives the cell's size by references.md's conventions: params = trainable parameters
(BatchNorm unfused), split into backbone / neck / Detect head; GFLOPs = 2 × MACs with
BatchNorm folded at the real input size (thop, plus Involution's aggregation), cross-checked
with FlopCounterMode. The baseline c3/pan/conv reproduces YOLOv5n (1,872,157 params,
4.47 GFLOPs at 640) and YOLOv5s (7,235,389, 16.43) of ultralytics/yolov5 v7.0.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch
from omegaconf import DictConfig, OmegaConf

from lightyolo.bench.flops import flop_counter_gflops, gflops
from lightyolo.bench.params import part_parameter_counts
from lightyolo.configs import MODEL_GROUPS, config_dirs, group_files
from lightyolo.models.detector import Detector, build_detector

TABLE_FORMATS = ("markdown", "csv")
TableFormat = Literal["markdown", "csv"]

# (row key, markdown header); the CSV uses the row keys themselves.
MARKDOWN_COLUMNS: tuple[tuple[str, str], ...] = (
    ("backbone", "backbone"),
    ("neck", "neck"),
    ("operator", "operator"),
    ("params_m", "params (M)"),
    ("gflops", "GFLOPs"),
    ("gflops_check", "GFLOPs (FlopCounterMode)"),
    ("backbone_params_m", "backbone (M)"),
    ("neck_params_m", "neck (M)"),
    ("head_params_m", "head (M)"),
    ("strides", "strides"),
)


@dataclass(frozen=True)
class Cell:
    """One grid cell: a config file per group (`conf/<group>/<name>.yaml`)."""

    backbone: Path
    neck: Path
    operator: Path

    @property
    def names(self) -> tuple[str, str, str]:
        return self.backbone.stem, self.neck.stem, self.operator.stem

    @property
    def name(self) -> str:
        """"c3/pan/conv": the cell as the report's baseline key spells it."""
        return "/".join(self.names)


def discover_cells(conf_dir: Path | None = None) -> list[Cell]:
    """Every combination of the yamls in <dir>/{backbone,neck,operator}, sorted by name; the
    dirs are `conf_dir` alone, or by default conf/ and LIGHTYOLO_CONFIG_PATH's (`config_dirs`)."""
    dirs = [Path(conf_dir)] if conf_dir else config_dirs()
    options = []
    for group in MODEL_GROUPS:
        files = group_files(group, dirs)
        if not files:
            where = ", ".join(str(d / group) for d in dirs)
            raise FileNotFoundError(f"{where}: no *.yaml variant found for group {group!r}")
        options.append(files)
    return [Cell(b, n, o) for b in options[0] for n in options[1] for o in options[2]]


def load_variant(path: Path) -> DictConfig:
    """A variant yaml, checked to be a mapping with a `_target_`."""
    config = OmegaConf.load(path)
    if not isinstance(config, DictConfig) or "_target_" not in config:
        raise ValueError(f"{path}: expected a mapping with a `_target_` key (the class to build)")
    return config


def build_cell(cell: Cell, scale: str, nc: int = 80) -> Detector:
    """The detector of `cell` at YOLOv5 scale `scale` (n, s, m) for `nc` classes."""
    return build_detector(
        load_variant(cell.backbone),
        load_variant(cell.neck),
        load_variant(cell.operator),
        scale=scale,
        nc=nc,
    )


def output_strides(model: Detector, img_size: int) -> tuple[int, ...]:
    """Strides of the head's raw outputs on a forward at img_size, checked against the declared ones."""
    model.eval()
    with torch.inference_mode():
        _, raw = model(torch.zeros(1, 3, img_size, img_size))
    measured = tuple(img_size // level.shape[2] for level in raw)
    declared = tuple(int(s) for s in model.stride.tolist())
    if measured != declared or any(level.shape[2] * s != img_size for level, s in zip(raw, declared)):
        raise RuntimeError(
            f"declared strides {declared} but a {img_size}×{img_size} forward gave maps "
            f"{[tuple(level.shape[2:4]) for level in raw]}"
        )
    return measured


def zoo_row(cell: Cell, scale: str, img_size: int, nc: int = 80, *, check: bool = True) -> dict[str, Any]:
    """Sizes of one cell: params (exact and split), GFLOPs (and the FlopCounterMode check), strides."""
    model = build_cell(cell, scale, nc)
    parts = part_parameter_counts(model)
    backbone, neck, operator = cell.names
    return {
        "scale": scale,
        "backbone": backbone,
        "neck": neck,
        "operator": operator,
        "img_size": img_size,
        "params": parts["total"],
        "params_m": round(parts["total"] / 1e6, 3),
        "backbone_params": parts["backbone"],
        "neck_params": parts["neck"],
        "head_params": parts["head"],
        "backbone_params_m": round(parts["backbone"] / 1e6, 3),
        "neck_params_m": round(parts["neck"] / 1e6, 3),
        "head_params_m": round(parts["head"] / 1e6, 3),
        "gflops": round(gflops(model, img_size), 3),
        "gflops_check": round(flop_counter_gflops(model, img_size), 3) if check else None,
        "strides": "/".join(str(s) for s in output_strides(model, img_size)),
    }


def zoo_rows(
    scale: str, img_size: int, nc: int = 80, *, conf_dir: Path | None = None, check: bool = True
) -> list[dict[str, Any]]:
    """One `zoo_row` per discovered cell; `check=False` skips the FlopCounterMode column (faster)."""
    if img_size < 32 or img_size % 32:
        raise ValueError(f"img_size: expected a positive multiple of 32 (the largest stride), got {img_size}")
    return [zoo_row(cell, scale, img_size, nc, check=check) for cell in discover_cells(conf_dir)]


def format_table(rows: list[dict[str, Any]], fmt: TableFormat = "markdown") -> str:
    """The rows as a markdown table (MARKDOWN_COLUMNS) or as CSV with every row key."""
    if fmt == "csv":
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=list(rows[0]) if rows else [], lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
        return buffer.getvalue()
    if fmt == "markdown":
        lines = [
            "| " + " | ".join(header for _, header in MARKDOWN_COLUMNS) + " |",
            "|" + "---|" * len(MARKDOWN_COLUMNS),
        ]
        for row in rows:
            cells = (_markdown_cell(row.get(key)) for key, _ in MARKDOWN_COLUMNS)
            lines.append("| " + " | ".join(cells) + " |")
        return "\n".join(lines) + "\n"
    raise ValueError(f"format: expected one of {TABLE_FORMATS}, got {fmt!r}")


def _markdown_cell(value: Any) -> str:
    # Three decimals everywhere, so the millions and GFLOPs columns line up.
    if value is None:
        return "—"
    return f"{value:.3f}" if isinstance(value, float) else str(value)
