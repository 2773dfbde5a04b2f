"""The assembled detector (backbone → neck → head) and its builder from Hydra configs.

Every grid cell is built here: `build_detector` instantiates the operator, backbone, neck and
head configs (`conf/operator`, `conf/backbone`, `conf/neck`, `conf/head`, each a `_target_`)
at one of YOLOv5's scales; without a head config it puts YOLOv5's Detect on the neck (the
default `head=v5`). With c3/pan/conv/v5 it is YOLOv5 v7.0 (ultralytics/yolov5): 1,872,157
params at n and 7,235,389 at s for nc 80 (docs/references.md); c3/pan/conv/v8 is ultralytics'
yolov5nu (2,654,816 at n) and c2f/c2f_pan/conv/v8 is YOLOv8n (3,157,200).
"""

from __future__ import annotations

from typing import Any

import torch
from hydra.utils import instantiate
from torch import nn

from lightyolo.models.contracts import (
    check_arguments, check_head, check_module, check_operator, check_parts, declared_triple,
)
from lightyolo.models.heads.v5 import Detect

# YOLOv5's model scales: name → (width_multiple, depth_multiple).
SCALES: dict[str, tuple[float, float]] = {
    "n": (0.25, 0.33),
    "s": (0.50, 0.33),
    "m": (0.75, 0.67),
}


class Detector(nn.Module):
    """head(neck(backbone(x))): the head's training output in training mode, (decoded, raw) in eval mode."""

    def __init__(self, backbone: nn.Module, neck: nn.Module, head: nn.Module) -> None:
        super().__init__()
        self.backbone = backbone
        self.neck = neck
        self.head = head

    @property
    def stride(self) -> torch.Tensor:
        """Strides of the head's levels (float tensor, (nl,))."""
        return self.head.stride

    @property
    def nc(self) -> int:
        return self.head.nc

    def forward(self, x: torch.Tensor) -> list[torch.Tensor] | tuple[torch.Tensor, list[torch.Tensor]]:
        return self.head(self.neck(self.backbone(x)))


def build_detector(
    backbone_cfg: Any, neck_cfg: Any, operator_cfg: Any, *, scale: str, nc: int, head_cfg: Any = None
) -> Detector:
    """Instantiate operator, backbone, neck and head configs at `scale` for `nc` classes;
    `head_cfg=None` is YOLOv5's Detect (`conf/head/v5.yaml`).

    Each part is checked against its contract (`models/contracts.py`): its constructor's
    arguments before it is instantiated, the built operator, backbone, neck and head after."""
    if scale not in SCALES:
        raise ValueError(f"scale: unknown scale {scale!r}; expected one of {sorted(SCALES)}")
    width_multiple, depth_multiple = SCALES[scale]
    check_arguments(operator_cfg, "operator")
    operator = instantiate(operator_cfg)
    check_operator(operator)
    scaled = {"width_multiple": width_multiple, "depth_multiple": depth_multiple, "operator": operator}
    check_arguments(backbone_cfg, "backbone", **scaled)
    backbone = instantiate(backbone_cfg, **scaled)
    check_module(backbone, "backbone")
    backbone_channels = declared_triple(backbone, "backbone", "out_channels")
    check_arguments(neck_cfg, "neck", in_channels=backbone_channels, **scaled)
    neck = instantiate(neck_cfg, in_channels=backbone_channels, **scaled)
    check_module(neck, "neck")
    channels, strides = check_parts(backbone, neck)
    if head_cfg is None:
        return Detector(backbone, neck, Detect(nc, channels, strides=strides))
    check_arguments(head_cfg, "head", nc=nc, in_channels=channels, strides=strides)
    head = instantiate(head_cfg, nc=nc, in_channels=channels, strides=strides)
    check_head(head, strides)
    return Detector(backbone, neck, head)
