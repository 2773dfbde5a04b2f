"""Slim-neck: YOLOv5's PAN with GSConv and VoV-GSCSP blocks (Li et al., arXiv 2206.02424).

Reference implementation AlanLi1997/slim-neck-by-gsconv (`GSConv`, `GSBottleneck`,
`VoVGSCSP`, `slimneck2yolov5.yaml`). The topology is `PANNeck`'s (docs/references.md, "YOLOv5");
every neck Conv becomes a GSConv (1×1 laterals, 3×3 stride-2 downsamplers) and every neck
C3 a VoVGSCSP with 3 × depth-multiple GSBottlenecks. The official VoVGSCSP also builds a 3×3
conv `res` that its forward never uses; it is not built here.

Reproduces docs/references.md ("Slim-neck", 640, nc 80): C3 backbone + slim-neck + Detect has
6,400,381 params / 15.08 GFLOPs at s and 1,669,693 params / 4.14 GFLOPs at n
(neck alone 1,999,680 and 508,320).

GSConv's depthwise 5×5 is an operator site (a C→C stride-1 op), so `operator=involution`
replaces it with Involution.
"""

from __future__ import annotations

import torch
from torch import nn

from lightyolo.models.blocks import channel_shuffle
from lightyolo.models.layers import Conv
from lightyolo.models.necks.pan import PANNeck
from lightyolo.models.operators import SpatialOperator

# The official GSConv mixes its two halves with a depthwise 5×5.
GSCONV_DEPTHWISE_KERNEL = 5


class GSConv(nn.Module):
    """Conv k×k stride s to c2/2, the operator's depthwise 5×5 on it, concat, shuffle."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int = 1,
        stride: int = 1,
        *,
        operator: SpatialOperator,
        act: bool | nn.Module = True,
    ) -> None:
        super().__init__()
        if out_channels % 2:
            raise ValueError(f"GSConv: out_channels must be even (two halves), got {out_channels}")
        half = out_channels // 2
        self.cv1 = Conv(in_channels, half, kernel_size, stride, act=act)
        self.cv2 = operator(half, GSCONV_DEPTHWISE_KERNEL, depthwise=True, act=act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        dense = self.cv1(x)
        return channel_shuffle(torch.cat((dense, self.cv2(dense)), 1), 2)


class GSBottleneck(nn.Module):
    """GSConv 1×1 → GSConv 3×3 (no activation), plus a 1×1 Conv shortcut (no activation)."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        operator: SpatialOperator,
        expansion: float = 0.5,
    ) -> None:
        super().__init__()
        hidden = int(out_channels * expansion)
        self.conv_lighting = nn.Sequential(
            GSConv(in_channels, hidden, 1, 1, operator=operator),
            GSConv(hidden, out_channels, 3, 1, operator=operator, act=False),
        )
        self.shortcut = Conv(in_channels, out_channels, 1, 1, act=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv_lighting(x) + self.shortcut(x)


class VoVGSCSP(nn.Module):
    """cv3(concat(cv2(x), GSBottlenecks(cv1(x)))), hidden width c2/2 (no unused `res`)."""

    def __init__(
        self, in_channels: int, out_channels: int, repeats: int, operator: SpatialOperator
    ) -> None:
        super().__init__()
        hidden = out_channels // 2
        self.cv1 = Conv(in_channels, hidden, 1, 1)
        self.cv2 = Conv(in_channels, hidden, 1, 1)
        # As in the official VoVGSCSP, its bottlenecks keep the full hidden width inside.
        self.gsb = nn.Sequential(
            *(GSBottleneck(hidden, hidden, operator, expansion=1.0) for _ in range(repeats))
        )
        self.cv3 = Conv(2 * hidden, out_channels, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.cv3(torch.cat((self.cv2(x), self.gsb(self.cv1(x))), 1))


class SlimNeck(PANNeck):
    """PANNeck's topology and widths with GSConv for Conv and VoVGSCSP for C3."""

    def conv_layer(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        stride: int,
        operator: SpatialOperator,
    ) -> nn.Module:
        return GSConv(in_channels, out_channels, kernel_size, stride, operator=operator)

    def csp_layer(
        self, in_channels: int, out_channels: int, repeats: int, operator: SpatialOperator
    ) -> nn.Module:
        return VoVGSCSP(in_channels, out_channels, repeats, operator)
