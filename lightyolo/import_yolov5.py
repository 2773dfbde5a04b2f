"""`python -m lightyolo.import_yolov5 src=yolov5n.pt out=yolov5n.state_dict.pt`: an official
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
from omegaconf import OmegaConf

from lightyolo.cli import key_value_command
from lightyolo.configs import config_dir
from lightyolo.export import ExportError, parse_key_values
from lightyolo.models.detector import build_detector
from lightyolo.models.weights import load_weights
from lightyolo.models.yolov5_checkpoint import CheckpointError, read_yolov5_checkpoint

USAGE = """usage: python -m lightyolo.import_yolov5 src=FILE.pt out=FILE

  src=FILE.pt   an official YOLOv5 detection checkpoint (v6.x/v7.0, yolov5n/s/m.pt or your own)
  out=FILE      where to write the state dict (then: model.weights=FILE model.scale=<its scale>)
"""


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


def run(argv: list[str]) -> None:
    values = parse_key_values(argv, ["src", "out"], "import_yolov5")
    if set(values) != {"src", "out"}:
        raise ExportError("import_yolov5: give src=FILE.pt and out=FILE")
    print(convert(Path(values["src"]), Path(values["out"])))


def main(argv: Sequence[str] | None = None) -> int:
    return key_value_command("lightyolo.import_yolov5", USAGE, argv, run, (ExportError, CheckpointError, OSError))


if __name__ == "__main__":
    sys.exit(main())
