"""`lightyolo import_yolov5 src=yolov5n.pt out=yolov5n.state_dict.pt` (conf/import_yolov5.yaml): an official
YOLOv5 detection checkpoint (v6.x / v7.0, scales n/s/m) → the state dict `model.weights=`
loads. The converted weights are checked by loading them, complete, into lightyolo's YOLOv5
(backbone=c3 neck=pan operator=conv) of the checkpoint's scale and class count.
Unpickling runs code from the file: convert only checkpoints you trust
(lightyolo/models/yolov5_checkpoint.py says what is refused).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf

from lightyolo import command
from lightyolo.configs import config_dir
from lightyolo.models.detector import build_detector
from lightyolo.models.weights import load_weights
from lightyolo.models.yolov5_checkpoint import CheckpointError, read_yolov5_checkpoint


def convert(src: Path, out: Path) -> str:
    """Write `src`'s weights to `out`; the line that says what was written."""
    state, scale, nc = read_yolov5_checkpoint(src)
    groups = {group: OmegaConf.load(config_dir() / group / f"{name}.yaml")
              for group, name in (("backbone", "c3"), ("neck", "pan"), ("operator", "conv"))}
    model = build_detector(groups["backbone"], groups["neck"], groups["operator"], scale=scale, nc=nc)
    out.parent.mkdir(parents=True, exist_ok=True)
    torch.save(state, out)
    report = load_weights(model, out)
    if not report.complete:  # a layout lightyolo's YOLOv5 does not reproduce: keep nothing
        out.unlink()
        raise CheckpointError(f"{src}: its weights do not fit lightyolo's YOLOv5{scale} ({report})")
    return f"wrote {out}: YOLOv5{scale}, {nc} classes, {len(state)} tensors; use model.weights={out} model.scale={scale}"


def run(cfg: DictConfig) -> None:
    for key in ("src", "out"):
        command.required(cfg, key, "import_yolov5: give src=FILE.pt and out=FILE")
    print(convert(Path(command.text(cfg, "src")), Path(command.text(cfg, "out"))))


def main(argv: Sequence[str] | None = None) -> int:
    """`lightyolo import_yolov5 src=FILE.pt out=FILE` (conf/import_yolov5.yaml)."""
    return command.run("import_yolov5", argv, run, label="lightyolo.import_yolov5",
                       errors=(CheckpointError, OSError))


if __name__ == "__main__":
    sys.exit(main())
