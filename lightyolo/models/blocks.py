"""YOLOv5 v6+ blocks: Bottleneck, C3, SPPF (ultralytics/yolov5 `models/common.py` semantics).

Module attribute names (cv1, cv2, cv3, m) follow YOLOv5's so that its official state_dict
maps onto these blocks by name.
"""

from __future__ import annotations

import torch
from torch import nn

from lightyolo.models.layers import Conv
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
        # The 3×3 is an operator site only when it keeps the channel count (design.md).
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
