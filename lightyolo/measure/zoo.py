"""The model zoo: every backbone × neck × operator (× head) cell found in `conf/`, built and measured.

The grid is discovered, never listed: each yaml in `conf/backbone/`, `conf/neck/`,
`conf/operator/` and `conf/head/` (and the same folders of every LIGHTYOLO_CONFIG_PATH
directory) is one option, so a new variant's yaml shows up in the table with no edit. Every
head combines with every backbone, neck and operator (the contracts check each build).
Each row gives the cell's size by docs/references.md's conventions: params = trainable parameters
(BatchNorm unfused), split into backbone / neck / Detect head; GFLOPs = 2 × MACs with
BatchNorm folded at the real input size (thop, plus Involution's aggregation), cross-checked
with FlopCounterMode. The baseline c3/pan/conv reproduces YOLOv5n (1,872,157 params,
4.47 GFLOPs at 640) and YOLOv5s (7,235,389, 16.43) of ultralytics/yolov5 v7.0; with the v8
head c3/pan/conv/v8 is ultralytics' yolov5nu (2,654,816) and c2f/c2f_pan/conv/v8 YOLOv8n
(3,157,200), their GFLOPs below ultralytics' by the BatchNorm it counts unfused (docs/heads.md).
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch
from omegaconf import DictConfig, OmegaConf

from lightyolo.measure.flops import flop_counter_gflops, gflops
from lightyolo.measure.params import part_parameter_counts
from lightyolo.configs import DEFAULT_HEAD, MODEL_GROUPS, config_dirs, group_files
from lightyolo.models.detector import Detector, build_detector

TABLE_FORMATS = ("markdown", "csv")
TableFormat = Literal["markdown", "csv"]

# (row key, markdown header); the CSV uses the row keys themselves.
MARKDOWN_COLUMNS: tuple[tuple[str, str], ...] = (
    ("backbone", "backbone"),
    ("neck", "neck"),
    ("operator", "operator"),
    ("head", "head"),  # shown when the rows have a head
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
    """One grid cell: a config file per group (`conf/<group>/<name>.yaml`); `head` None is the
    default head (YOLOv5's Detect)."""

    backbone: Path
    neck: Path
    operator: Path
    head: Path | None = None

    @property
    def names(self) -> tuple[str, ...]:
        """(backbone, neck, operator), and the head's name when the cell names one."""
        names = (self.backbone.stem, self.neck.stem, self.operator.stem)
        return names if self.head is None else (*names, self.head.stem)

    @property
    def name(self) -> str:
        """"c3/pan/conv" (or "c3/pan/conv/v8"): the cell as the report's baseline key spells it."""
        return "/".join(self.names)


def discover_cells(conf_dir: Path | None = None, *, heads: str | None = None) -> list[Cell]:
    """Every combination of the yamls in <dir>/{backbone,neck,operator}, sorted by name; the
    dirs are `conf_dir` alone, or by default conf/ and LIGHTYOLO_CONFIG_PATH's (`config_dirs`).

    `heads`: None = the default head only (cells without a head file); "all" = × every yaml in
    <dir>/head; a head's name = that head only."""
    dirs = [Path(conf_dir)] if conf_dir else config_dirs()
    groups = MODEL_GROUPS if heads is None else (*MODEL_GROUPS, "head")
    options = []
    for group in groups:
        files = group_files(group, dirs)
        if group == "head" and heads != "all":
            files = [f for f in files if f.stem == heads]
            if not files:
                raise FileNotFoundError(f"head {heads!r}: no head/{heads}.yaml in {', '.join(map(str, dirs))}")
        if not files:
            where = ", ".join(str(d / group) for d in dirs)
            raise FileNotFoundError(f"{where}: no *.yaml variant found for group {group!r}")
        options.append(files)
    head_files: list[Path | None] = list(options[3]) if heads is not None else [None]
    return [Cell(b, n, o, h) for b in options[0] for n in options[1] for o in options[2] for h in head_files]


def load_variant(path: Path, group: str | None = None) -> DictConfig:
    """A variant yaml, checked to be a mapping with a `_target_`; for a global-package yaml
    (a head's, which may carry recipe keys) its `<group>` node."""
    config = OmegaConf.load(path)
    if group is not None and isinstance(config, DictConfig) and isinstance(config.get(group), DictConfig):
        config = config[group]
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
        head_cfg=load_variant(cell.head, "head") if cell.head is not None else None,
    )


def output_strides(model: Detector, img_size: int) -> tuple[int, ...]:
    """Strides of the head's raw outputs on a forward at img_size, checked against the declared ones."""
    model.eval()
    with torch.inference_mode():
        _, raw = model(torch.zeros(1, 3, img_size, img_size))
    # (B, C, H, W) maps (anchor-free head) or (B, na, H, W, C) (YOLOv5's): H sits at dim -2 or 2.
    heights = [level.shape[-2] if level.dim() == 4 else level.shape[2] for level in raw]
    measured = tuple(img_size // height for height in heights)
    declared = tuple(int(s) for s in model.stride.tolist())
    if measured != declared or any(height * s != img_size for height, s in zip(heights, declared)):
        raise RuntimeError(
            f"declared strides {declared} but a {img_size}×{img_size} forward gave maps of heights {heights}"
        )
    return measured


def zoo_row(cell: Cell, scale: str, img_size: int, nc: int = 80, *, check: bool = True) -> dict[str, Any]:
    """Sizes of one cell: params (exact and split), GFLOPs (and the FlopCounterMode check), strides."""
    model = build_cell(cell, scale, nc)
    parts = part_parameter_counts(model)
    backbone, neck, operator = cell.names[:3]
    head = {} if cell.head is None else {"head": cell.head.stem}
    return {
        "scale": scale,
        "backbone": backbone,
        "neck": neck,
        "operator": operator,
        **head,
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
    scale: str, img_size: int, nc: int = 80, *, conf_dir: Path | None = None, check: bool = True,
    head: str = DEFAULT_HEAD,
) -> list[dict[str, Any]]:
    """One `zoo_row` per discovered cell with `head` (a head's name or "all"); `check=False`
    skips the FlopCounterMode column (faster)."""
    if img_size < 32 or img_size % 32:
        raise ValueError(f"img_size: expected a positive multiple of 32 (the largest stride), got {img_size}")
    return [zoo_row(cell, scale, img_size, nc, check=check) for cell in discover_cells(conf_dir, heads=head)]


def format_table(rows: list[dict[str, Any]], fmt: TableFormat = "markdown") -> str:
    """The rows as a markdown table (MARKDOWN_COLUMNS) or as CSV with every row key."""
    if fmt == "csv":
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=list(rows[0]) if rows else [], lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
        return buffer.getvalue()
    if fmt == "markdown":
        columns = [(key, header) for key, header in MARKDOWN_COLUMNS if key != "head" or any("head" in r for r in rows)]
        lines = [
            "| " + " | ".join(header for _, header in columns) + " |",
            "|" + "---|" * len(columns),
        ]
        for row in rows:
            cells = (_markdown_cell(row.get(key)) for key, _ in columns)
            lines.append("| " + " | ".join(cells) + " |")
        return "\n".join(lines) + "\n"
    raise ValueError(f"format: expected one of {TABLE_FORMATS}, got {fmt!r}")


def _markdown_cell(value: Any) -> str:
    # Three decimals everywhere, so the millions and GFLOPs columns line up.
    if value is None:
        return "—"
    return f"{value:.3f}" if isinstance(value, float) else str(value)
