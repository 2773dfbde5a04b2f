"""Primitive layers shared by every backbone, neck and head (YOLOv5 v6+ conventions)."""

from __future__ import annotations

import math

import torch
from torch import nn

# YOLOv5 trains with these BatchNorm settings; its official weights assume them.
BN_EPS = 1e-3
BN_MOMENTUM = 0.03


def autopad(kernel_size: int, padding: int | None = None, dilation: int = 1) -> int:
    """'Same' padding for an odd kernel at stride 1."""
    if padding is not None:
        return padding
    effective = dilation * (kernel_size - 1) + 1
    return effective // 2


def make_divisible(value: float, divisor: int = 8) -> int:
    """Round a channel count up to a multiple of `divisor` (YOLOv5's rule)."""
    return int(math.ceil(value / divisor) * divisor)


def scale_width(channels: int, width_multiple: float, divisor: int = 8) -> int:
    """A base channel count times YOLOv5's width multiple, rounded up to a multiple of 8."""
    return make_divisible(channels * width_multiple, divisor)


def scale_depth(repeats: int, depth_multiple: float) -> int:
    """A base repeat count times YOLOv5's depth multiple (rounded, at least 1)."""
    return max(round(repeats * depth_multiple), 1) if repeats > 1 else repeats


def resolve_activation(act: bool | nn.Module) -> nn.Module:
    """True → SiLU (YOLOv5's default), False → Identity, a module → that module."""
    if act is True:
        return nn.SiLU()
    if act is False or act is None:
        return nn.Identity()
    return act


class Conv(nn.Module):
    """Conv2d (no bias) → BatchNorm2d (eps 1e-3, momentum 0.03) → activation."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int = 1,
        stride: int = 1,
        padding: int | None = None,
        groups: int = 1,
        dilation: int = 1,
        act: bool | nn.Module = True,
    ) -> None:
        super().__init__()
        self.conv = nn.Conv2d(
            in_channels,
            out_channels,
            kernel_size,
            stride,
            autopad(kernel_size, padding, dilation),
            dilation=dilation,
            groups=groups,
            bias=False,
        )
        self.bn = nn.BatchNorm2d(out_channels, eps=BN_EPS, momentum=BN_MOMENTUM)
        self.act = resolve_activation(act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.bn(self.conv(x)))
