"""YOLOv5's CSP-Darknet backbone with C3 blocks and SPPF (YOLOv5 v6.0+ layers 0–9).

Reference implementation: ultralytics/yolov5 v7.0, `models/yolov5{n,s,m}.yaml` (backbone
section) with `models/common.py`'s Conv, C3 and SPPF. The CSP design follows CSPNet
(arXiv 1911.11929). Reproduces (docs/references.md, "YOLOv5"): 1,046,368 params at scale n and
4,171,456 at scale s (unfused), taps with 64/128/256 channels at n.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import nn

from lightyolo.models.blocks import C3, SPPF
from lightyolo.models.contracts import STRIDES
from lightyolo.models.layers import Conv, scale_depth, scale_width
from lightyolo.models.operators import SpatialOperator


class LayerSpec(NamedTuple):
    """One row of the backbone table, at width and depth multiple 1.0."""

    kind: str  # "stem" | "down" (Conv k×k stride s) | "csp" (C3) | "sppf"
    channels: int
    repeats: int
    kernel_size: int
    stride: int
    tap: bool  # True: this layer's output is one of the three returned feature maps


# yolov5{n,s,m}.yaml backbone, read top to bottom (the index is YOLOv5's layer index).
C3_BACKBONE = (
    #        kind     out   n   k  s  tap
    LayerSpec("stem", 64, 1, 6, 2, False),  # 0  P1/2 (padding STEM_PADDING)
    LayerSpec("down", 128, 1, 3, 2, False),  # 1  P2/4
    LayerSpec("csp", 128, 3, 3, 1, False),  # 2
    LayerSpec("down", 256, 1, 3, 2, False),  # 3  P3/8
    LayerSpec("csp", 256, 6, 3, 1, True),  # 4  P3 tap
    LayerSpec("down", 512, 1, 3, 2, False),  # 5  P4/16
    LayerSpec("csp", 512, 9, 3, 1, True),  # 6  P4 tap
    LayerSpec("down", 1024, 1, 3, 2, False),  # 7  P5/32
    LayerSpec("csp", 1024, 3, 3, 1, False),  # 8
    LayerSpec("sppf", 1024, 1, 5, 1, True),  # 9  P5 tap
)
STEM_PADDING = 2


class C3Backbone(nn.Module):
    """YOLOv5's backbone: image → [P3/8, P4/16, P5/32].

    `layers` holds the ten layers in YOLOv5's order, so `layers.i` is YOLOv5's `model.i`.
    Subclasses that keep the layout but swap blocks override `stem_layer`, `down_layer`,
    `csp_layer` or `sppf_layer` (and `table`, to change kernels or repeats).
    """

    strides = STRIDES
    table: tuple[LayerSpec, ...] = C3_BACKBONE

    def __init__(
        self,
        width_multiple: float,
        depth_multiple: float,
        operator: SpatialOperator,
        in_channels: int = 3,
    ) -> None:
        super().__init__()
        self.width_multiple = width_multiple
        self.depth_multiple = depth_multiple
        layers: list[nn.Module] = []
        taps: list[int] = []
        tap_channels: list[int] = []
        channels = in_channels
        for index, spec in enumerate(self.table):
            out = scale_width(spec.channels, width_multiple)
            layers.append(self._build(spec, channels, out, depth_multiple, operator))
            if spec.tap:
                taps.append(index)
                tap_channels.append(out)
            channels = out
        self.layers = nn.ModuleList(layers)
        self.tap_indices: tuple[int, ...] = tuple(taps)
        self.out_channels: tuple[int, int, int] = tuple(tap_channels)  # type: ignore[assignment]

    def _build(
        self,
        spec: LayerSpec,
        in_channels: int,
        out_channels: int,
        depth_multiple: float,
        operator: SpatialOperator,
    ) -> nn.Module:
        if spec.kind == "stem":
            return self.stem_layer(in_channels, out_channels, spec.kernel_size, spec.stride)
        if spec.kind == "down":
            return self.down_layer(in_channels, out_channels, spec.kernel_size, spec.stride, operator)
        if spec.kind == "csp":
            repeats = scale_depth(spec.repeats, depth_multiple)
            return self.csp_layer(in_channels, out_channels, repeats, operator)
        if spec.kind == "sppf":
            return self.sppf_layer(in_channels, out_channels, spec.kernel_size)
        raise ValueError(f"backbone table: unknown layer kind {spec.kind!r}")

    def stem_layer(self, in_channels: int, out_channels: int, kernel_size: int, stride: int) -> nn.Module:
        # YOLOv5 v6+ replaced Focus by a 6×6 stride-2 conv; padding 2 (not "same" 3) halves
        # any even input exactly, as Focus's space-to-depth did.
        return Conv(in_channels, out_channels, kernel_size, stride, padding=STEM_PADDING)

    def down_layer(
        self, in_channels: int, out_channels: int, kernel_size: int, stride: int, operator: SpatialOperator
    ) -> nn.Module:
        return Conv(in_channels, out_channels, kernel_size, stride)

    def csp_layer(self, in_channels: int, out_channels: int, repeats: int, operator: SpatialOperator) -> nn.Module:
        return C3(in_channels, out_channels, repeats, operator, shortcut=True)

    def sppf_layer(self, in_channels: int, out_channels: int, kernel_size: int) -> nn.Module:
        return SPPF(in_channels, out_channels, kernel_size)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        features = []
        for index, layer in enumerate(self.layers):
            x = layer(x)
            if index in self.tap_indices:
                features.append(x)
        return features
