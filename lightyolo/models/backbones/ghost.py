"""Ghost backbone: YOLOv5's C3 backbone rebuilt from Ghost modules (yolov5s-ghost's backbone).

Paper: GhostNet, "More Features from Cheap Operations" (arXiv 1911.11907). Reference
implementation: ultralytics/yolov5 `models/hub/yolov5s-ghost.yaml` with GhostConv,
GhostBottleneck and C3Ghost. Layout and taps are the C3 backbone's, with every Conv after the
6×6 stem replaced by GhostConv (same kernel and stride) and every C3 by C3Ghost; SPPF is kept.

Reproduces (docs/references.md, "YOLOv5" and "Ghost"): 2,237,208 params at scale s (width 0.50,
depth 0.33) and 569,356 at scale n (width 0.25, depth 0.33); with the plain PAN neck and
Detect head, 5,301,141 (s) and 1,395,145 (n). Counts assume the default ConvOperator.
"""

from __future__ import annotations

import torch
from torch import nn

from lightyolo.models.backbones.c3 import C3Backbone
from lightyolo.models.blocks import C3
from lightyolo.models.layers import Conv
from lightyolo.models.operators import SpatialOperator

# The cheap depthwise op that makes the "ghost" half of GhostConv's output (yolov5's choice).
GHOST_KERNEL = 5

class GhostConv(nn.Module):
    """Conv k×k stride s to half the channels, plus a cheap depthwise 5×5 of that half; concat.

    The depthwise 5×5 is a stride-1 C→C op, so it comes from the operator.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        operator: SpatialOperator,
        kernel_size: int = 1,
        stride: int = 1,
        act: bool | nn.Module = True,
    ) -> None:
        super().__init__()
        hidden = out_channels // 2
        self.cv1 = Conv(in_channels, hidden, kernel_size, stride, act=act)
        self.cv2 = operator(hidden, GHOST_KERNEL, depthwise=True, act=act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.cv1(x)
        return torch.cat((y, self.cv2(y)), 1)


class GhostBottleneck(nn.Module):
    """GhostConv 1×1 (→ c2/2) → [depthwise k×k stride 2] → GhostConv 1×1 (→ c2, linear) + shortcut.

    Stride 1: identity shortcut. Stride 2: the shortcut is depthwise k×k stride 2 → 1×1 Conv,
    both linear. No activation after the sum.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        operator: SpatialOperator,
        kernel_size: int = 3,
        stride: int = 1,
    ) -> None:
        super().__init__()
        if stride not in (1, 2):
            raise ValueError(f"GhostBottleneck: stride must be 1 or 2, got {stride}")
        if stride == 1 and in_channels != out_channels:
            raise ValueError(
                "GhostBottleneck: stride 1 needs in_channels == out_channels for the identity "
                f"shortcut, got {in_channels} → {out_channels}"
            )
        hidden = out_channels // 2
        # Stride-2 depthwise convs are downsamplers, not operator sites (they change the size).
        downsample: nn.Module = (
            Conv(hidden, hidden, kernel_size, stride, groups=hidden, act=False)
            if stride == 2
            else nn.Identity()
        )
        self.conv = nn.Sequential(
            GhostConv(in_channels, hidden, operator, 1, 1),
            downsample,
            GhostConv(hidden, out_channels, operator, 1, 1, act=False),
        )
        self.shortcut: nn.Module = (
            nn.Sequential(
                Conv(in_channels, in_channels, kernel_size, stride, groups=in_channels, act=False),
                Conv(in_channels, out_channels, 1, 1, act=False),
            )
            if stride == 2
            else nn.Identity()
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x) + self.shortcut(x)


class C3Ghost(C3):
    """C3 whose bottlenecks are stride-1 GhostBottlenecks."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        repeats: int,
        operator: SpatialOperator,
        expansion: float = 0.5,
    ) -> None:
        # Zero plain Bottlenecks: building them would ask the operator for ops never used.
        super().__init__(in_channels, out_channels, 0, operator, expansion=expansion)
        hidden = int(out_channels * expansion)
        self.m = nn.Sequential(
            *(GhostBottleneck(hidden, hidden, operator) for _ in range(repeats))
        )


class GhostBackbone(C3Backbone):
    """Image → [P3/8, P4/16, P5/32] feature maps of the yolov5s-ghost backbone: the C3
    backbone's layout, taps and stem, with GhostConv downsamplers and C3Ghost blocks."""

    def down_layer(
        self, in_channels: int, out_channels: int, kernel_size: int, stride: int, operator: SpatialOperator
    ) -> nn.Module:
        return GhostConv(in_channels, out_channels, operator, kernel_size, stride)

    def csp_layer(self, in_channels: int, out_channels: int, repeats: int, operator: SpatialOperator) -> nn.Module:
        return C3Ghost(in_channels, out_channels, repeats, operator)
