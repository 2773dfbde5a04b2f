"""Ghost backbone: YOLOv5's C3 backbone rebuilt from Ghost modules (yolov5s-ghost's backbone).

Paper: GhostNet, "More Features from Cheap Operations" (arXiv 1911.11907). Reference
implementation: ultralytics/yolov5 `models/hub/yolov5s-ghost.yaml` with GhostConv,
GhostBottleneck and C3Ghost. Layout and taps are the C3 backbone's, with every Conv after the
6×6 stem replaced by GhostConv (same kernel and stride) and every C3 by C3Ghost; SPPF is kept.

Reproduces (references.md, "YOLOv5" and "Ghost"): 2,237,208 params at scale s (width 0.50,
depth 0.33) and 569,356 at scale n (width 0.25, depth 0.33); with the plain PAN neck and
Detect head, 5,301,141 (s) and 1,395,145 (n). Counts assume the default ConvOperator.
"""

from __future__ import annotations

import torch
from torch import nn

from lightyolo.models.blocks import C3, SPPF
from lightyolo.models.layers import Conv, scale_depth, scale_width
from lightyolo.models.operators import SpatialOperator

# The cheap depthwise op that makes the "ghost" half of GhostConv's output (yolov5's choice).
GHOST_KERNEL = 5

# yolov5s-ghost.yaml backbone at width/depth 1.0.
# stem: Conv(out, k, s, padding)
STEM = (64, 6, 2, 2)
# stage: GhostConv(out, k, s) downsampler, then C3Ghost(out) with `repeats` bottlenecks
#   out,  k, s, repeats
STAGES = (
    (128, 3, 2, 3),  # P2/4
    (256, 3, 2, 6),  # P3/8   tap
    (512, 3, 2, 9),  # P4/16  tap
    (1024, 3, 2, 3),  # P5/32 (tap after SPPF)
)
SPPF_OUT, SPPF_KERNEL = 1024, 5
# Stages whose output is a tap; the P5 tap is the SPPF output.
TAPPED_STAGES = (1, 2)


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


class GhostBackbone(nn.Module):
    """Image → [P3/8, P4/16, P5/32] feature maps of the yolov5s-ghost backbone."""

    strides = (8, 16, 32)

    def __init__(
        self,
        width_multiple: float,
        depth_multiple: float,
        operator: SpatialOperator,
        in_channels: int = 3,
    ) -> None:
        super().__init__()
        stem_out, stem_k, stem_s, stem_p = STEM
        channels = scale_width(stem_out, width_multiple)
        self.stem = Conv(in_channels, channels, stem_k, stem_s, stem_p)

        stages = []
        tap_channels = []
        for index, (base_out, kernel, stride, repeats) in enumerate(STAGES):
            out = scale_width(base_out, width_multiple)
            stages.append(
                nn.Sequential(
                    GhostConv(channels, out, operator, kernel, stride),
                    C3Ghost(out, out, scale_depth(repeats, depth_multiple), operator),
                )
            )
            channels = out
            if index in TAPPED_STAGES:
                tap_channels.append(out)
        self.stages = nn.ModuleList(stages)

        sppf_out = scale_width(SPPF_OUT, width_multiple)
        self.sppf = SPPF(channels, sppf_out, SPPF_KERNEL)
        self.out_channels: tuple[int, int, int] = (*tap_channels, sppf_out)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = self.stem(x)
        taps = []
        for index, stage in enumerate(self.stages):
            x = stage(x)
            if index in TAPPED_STAGES:
                taps.append(x)
        taps.append(self.sppf(x))
        return taps
