"""Blocks shared by backbones and necks.

YOLOv5 v6+ blocks: Bottleneck, C3, SPPF (ultralytics/yolov5 `models/common.py` semantics);
YOLOv8's C2f and its two-3×3 bottleneck (ultralytics 8.x `nn/modules/block.py`); their
attribute names (cv1, cv2, cv3, m) follow the reference code's so that its state_dicts map
onto them by name. Mobile blocks: `SqueezeExcite` and the MBConv-style
`InvertedResidual` (MobileNetV3, arXiv 1905.02244) and `channel_shuffle` (ShuffleNet; also
GSConv's mix of its two halves).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from lightyolo.models.layers import Conv, make_divisible
from lightyolo.models.operators import SpatialOperator


class Bottleneck(nn.Module):
    """1×1 Conv → 3×3 spatial op (from the operator), residual when shortcut and c1 == c2."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        operator: SpatialOperator,
        shortcut: bool = True,
        expansion: float = 0.5,
    ) -> None:
        super().__init__()
        hidden = int(out_channels * expansion)
        self.cv1 = Conv(in_channels, hidden, 1, 1)
        # The 3×3 is an operator site only when it keeps the channel count (docs/design.md).
        self.cv2 = (
            operator(hidden, 3, depthwise=False)
            if hidden == out_channels
            else Conv(hidden, out_channels, 3, 1)
        )
        self.add = shortcut and in_channels == out_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.cv2(self.cv1(x))
        return x + y if self.add else y


class C3(nn.Module):
    """CSP bottleneck with 3 convolutions: cv3(concat(m(cv1(x)), cv2(x)))."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        repeats: int,
        operator: SpatialOperator,
        shortcut: bool = True,
        expansion: float = 0.5,
    ) -> None:
        super().__init__()
        hidden = int(out_channels * expansion)
        self.cv1 = Conv(in_channels, hidden, 1, 1)
        self.cv2 = Conv(in_channels, hidden, 1, 1)
        self.cv3 = Conv(2 * hidden, out_channels, 1, 1)
        self.m = nn.Sequential(
            *(Bottleneck(hidden, hidden, operator, shortcut, expansion=1.0) for _ in range(repeats))
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.cv3(torch.cat((self.m(self.cv1(x)), self.cv2(x)), 1))


class SPPF(nn.Module):
    """Spatial pyramid pooling, fast: 1×1 to c1/2, three chained k×k max-pools, concat, 1×1."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 5) -> None:
        super().__init__()
        hidden = in_channels // 2
        self.cv1 = Conv(in_channels, hidden, 1, 1)
        self.cv2 = Conv(hidden * 4, out_channels, 1, 1)
        self.m = nn.MaxPool2d(kernel_size=kernel_size, stride=1, padding=kernel_size // 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.cv1(x)
        y1 = self.m(x)
        y2 = self.m(y1)
        return self.cv2(torch.cat((x, y1, y2, self.m(y2)), 1))


class C2fBottleneck(nn.Module):
    """YOLOv8's bottleneck: 3×3 → 3×3 (both C→C spatial ops from the operator), residual when shortcut."""

    def __init__(self, channels: int, operator: SpatialOperator, shortcut: bool = True) -> None:
        super().__init__()
        self.cv1 = operator(channels, 3, depthwise=False)
        self.cv2 = operator(channels, 3, depthwise=False)
        self.add = shortcut

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.cv2(self.cv1(x))
        return x + y if self.add else y


class C2f(nn.Module):
    """CSP with 2 convolutions, faster (YOLOv8): split cv1(x) in halves, chain `repeats`
    bottlenecks on the second half, concat every intermediate map, cv2 to the output."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        repeats: int,
        operator: SpatialOperator,
        shortcut: bool = False,
        expansion: float = 0.5,
    ) -> None:
        super().__init__()
        self.hidden = int(out_channels * expansion)
        self.cv1 = Conv(in_channels, 2 * self.hidden, 1, 1)
        self.cv2 = Conv((2 + repeats) * self.hidden, out_channels, 1, 1)
        self.m = nn.ModuleList(C2fBottleneck(self.hidden, operator, shortcut) for _ in range(repeats))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        maps = list(self.cv1(x).chunk(2, 1))
        for bottleneck in self.m:
            maps.append(bottleneck(maps[-1]))
        return self.cv2(torch.cat(maps, 1))


def channel_shuffle(x: torch.Tensor, groups: int) -> torch.Tensor:
    """Interleave the channels of `groups` equal groups (ShuffleNet's channel shuffle).

    With 2 groups: [a0 … a(n−1), b0 … b(n−1)] → [a0, b0, a1, b1, …]."""
    batch, channels, height, width = x.shape
    x = x.view(batch, groups, channels // groups, height, width).transpose(1, 2)
    return x.reshape(batch, channels, height, width)


class SqueezeExcite(nn.Module):
    """Channel gate: global average → 1×1 (bias) → ReLU → 1×1 (bias) → hard-sigmoid, times x."""

    def __init__(self, channels: int, squeeze_channels: int) -> None:
        super().__init__()
        self.fc1 = nn.Conv2d(channels, squeeze_channels, 1)
        self.act = nn.ReLU(inplace=True)
        self.fc2 = nn.Conv2d(squeeze_channels, channels, 1)
        self.gate = nn.Hardsigmoid()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scale = x.mean((2, 3), keepdim=True)
        return x * self.gate(self.fc2(self.act(self.fc1(scale))))


class InvertedResidual(nn.Module):
    """MBConv: [1×1 expand] → depthwise k×k stride s → [SE] → 1×1 project (linear).

    The expand is skipped when `hidden == in_channels`; the SE squeezes to hidden/4 (rounded
    to 8). The residual is added when the block keeps both size and channels (stride 1,
    in == out). `act` makes a fresh activation for each place that has one.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        *,
        kernel_size: int,
        hidden: int,
        stride: int,
        se: bool,
        act: Callable[[], nn.Module],
        operator: SpatialOperator,
    ) -> None:
        super().__init__()
        self.expand: nn.Module = (
            Conv(in_channels, hidden, 1, 1, act=act()) if hidden != in_channels else nn.Identity()
        )
        # Stride-2 depthwise convs change the size, so only stride-1 ones are operator sites.
        self.depthwise: nn.Module = (
            operator(hidden, kernel_size, depthwise=True, act=act())
            if stride == 1
            else Conv(hidden, hidden, kernel_size, stride, groups=hidden, act=act())
        )
        self.se: nn.Module = SqueezeExcite(hidden, make_divisible(hidden / 4, 8)) if se else nn.Identity()
        self.project = Conv(hidden, out_channels, 1, 1, act=False)
        self.residual = stride == 1 and in_channels == out_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.project(self.se(self.depthwise(self.expand(x))))
        return x + y if self.residual else y
