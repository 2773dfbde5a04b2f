"""Involution, the spatial operator of RedNet (Li et al., arXiv 2103.06255; d-li14/involution).

Instead of one k×k kernel shared by every pixel, involution generates a K×K kernel *per
pixel* from the input and shares it across a group of channels. This module reproduces the
operator of docs/references.md ("Involution"):

- kernel generator: 1×1 Conv C → C/r with BN + ReLU, then a 1×1 nn.Conv2d (with bias) to
  K²·G, where G = C / group_channels; at stride s > 1 the generator reads AvgPool(s) of x;
- aggregation: every output pixel is the K²-tap weighted sum of its K×K input window (zero
  padding (K−1)//2), with the weights its group's generated kernel;
- multiply-adds per output pixel: C·C/r + (C/r)·K²·G (generator convs, counted by thop) +
  C·K² (aggregation, `InvolutionAggregation.functional_macs`).

Channel counts the paper never meets (lightweight backbones have widths such as 58, 116,
72, 88, 120) follow two rules, so that any C builds:

- **groups**: the channels per kernel are the largest divisor of C that is at most
  `group_channels` (16), and G = C / that. C = 64 → 16 per kernel, G = 4 (the paper);
  C = 120 → 15, G = 8; C = 88 → 11, G = 8; C = 58 → 2, G = 29; a prime C → 1 per kernel,
  G = C. A kernel is thus never shared by more channels than in the paper.
- **reduction**: the generator's hidden width is max(C // reduction, MIN_REDUCED_CHANNELS)
  = max(C // 4, 4), so that narrow layers keep a usable generator.

Odd feature-map sizes work at every stride: the output is ceil(H / s) × ceil(W / s), and
the generator's average pool uses ceil mode so that its grid matches the aggregation's.

Aggregation accumulates the K² shifted windows one tap at a time, with a hand-written
backward, instead of materialising `unfold`'s (B, C·K², H·W) tensor (49× the activation at
K = 7). Measured on CPU, 1 thread, (B, C, H, W) = (8, 64, 80, 80), G = 4, K = 7, forward +
backward: unfold-multiply-sum 2.2 GB peak RSS and 4.7-9.7 s; shifted taps 0.43 GB and
0.8-1.1 s (plain autograd through the tap loop: 0.7-1.9 GB, 2-6 s).

While being traced for export (TorchScript, ONNX) the aggregation takes a plain-op path
instead, the same tap sum out of place (`_plain_tap_aggregation`): the autograd.Function
has no ONNX symbolic and fails the TorchScript exporter ("Argument passed to at() was not
in the map"). Eager inference keeps the Function (under no_grad it records nothing).
"""

from __future__ import annotations

import torch
from torch import nn
from torch.autograd.function import once_differentiable
from torch.nn import functional as F

from lightyolo.models.layers import BN_EPS, BN_MOMENTUM, Conv, resolve_activation

# Narrow layers (C < 16) would otherwise get a 1-3 channel kernel generator.
MIN_REDUCED_CHANNELS = 4


def channels_per_kernel(channels: int, group_channels: int) -> int:
    """The largest divisor of `channels` that is at most `group_channels`."""
    if channels < 1 or group_channels < 1:
        raise ValueError(
            f"involution: channels and group_channels must be >= 1, got {channels} and "
            f"{group_channels}"
        )
    return max(d for d in range(1, min(channels, group_channels) + 1) if channels % d == 0)


def _tap_windows(
    padded: torch.Tensor, kernel_size: int, stride: int, out_h: int, out_w: int
) -> list[torch.Tensor]:
    """The K² strided views of `padded` (…, H + 2p, W + 2p) that line up with the output grid."""
    h_span, w_span = stride * (out_h - 1) + 1, stride * (out_w - 1) + 1
    return [
        padded[..., row : row + h_span : stride, col : col + w_span : stride]
        for row in range(kernel_size)
        for col in range(kernel_size)
    ]


def _grouped(
    x: torch.Tensor, kernel: torch.Tensor, kernel_size: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Zero-padded x as (B, G, C/G, H+2p, W+2p) and kernel as (B, G, 1, K², H_out, W_out)."""
    batch, channels = x.shape[:2]
    taps = kernel_size**2
    groups = kernel.shape[1] // taps
    pad = (kernel_size - 1) // 2
    padded = F.pad(x, (pad, pad, pad, pad))
    grouped_x = padded.view(batch, groups, channels // groups, *padded.shape[-2:])
    grouped_kernel = kernel.reshape(batch, groups, 1, taps, *kernel.shape[-2:])
    return grouped_x, grouped_kernel


class _ShiftedTapAggregation(torch.autograd.Function):
    """sum over taps t of window_t(x) · kernel_t, with a hand-written backward.

    Autograd through the tap loop would keep one full-size gradient per tap alive during
    backward (measured: up to 1.8 GB where this needs the size of x and kernel only).
    """

    @staticmethod
    def forward(ctx, x: torch.Tensor, kernel: torch.Tensor, kernel_size: int, stride: int):
        ctx.save_for_backward(x, kernel)
        ctx.kernel_size, ctx.stride = kernel_size, stride
        grouped_x, grouped_kernel = _grouped(x, kernel, kernel_size)
        out_h, out_w = kernel.shape[-2:]
        out = x.new_zeros(*grouped_x.shape[:3], out_h, out_w)
        for tap, window in enumerate(_tap_windows(grouped_x, kernel_size, stride, out_h, out_w)):
            out.addcmul_(window, grouped_kernel[:, :, :, tap])
        return out.view(x.shape[0], x.shape[1], out_h, out_w)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_out: torch.Tensor):
        x, kernel = ctx.saved_tensors
        k, s = ctx.kernel_size, ctx.stride
        grouped_x, grouped_kernel = _grouped(x, kernel, k)
        out_h, out_w = kernel.shape[-2:]
        grad_out = grad_out.reshape(*grouped_x.shape[:3], out_h, out_w)
        grad_padded = torch.zeros_like(grouped_x)
        grad_kernel = torch.empty_like(grouped_kernel)
        x_windows = _tap_windows(grouped_x, k, s, out_h, out_w)
        grad_windows = _tap_windows(grad_padded, k, s, out_h, out_w)
        for tap, (window, grad_window) in enumerate(zip(x_windows, grad_windows)):
            grad_window.addcmul_(grad_out, grouped_kernel[:, :, :, tap])
            # A group's kernel is shared by its channels: sum their contributions.
            grad_kernel[:, :, 0, tap] = (grad_out * window).sum(2)
        pad = (k - 1) // 2
        height, width = x.shape[-2:]
        grad_x = grad_padded.view(x.shape[0], x.shape[1], height + 2 * pad, width + 2 * pad)
        grad_x = grad_x[..., pad : pad + height, pad : pad + width]
        return grad_x, grad_kernel.view_as(kernel), None, None


def _exporting() -> bool:
    """Whether this forward is being traced for TorchScript or ONNX export."""
    return torch.jit.is_tracing() or torch.onnx.is_in_onnx_export()


def _plain_tap_aggregation(x: torch.Tensor, kernel: torch.Tensor, kernel_size: int, stride: int) -> torch.Tensor:
    """The export path: the same shifted-tap sum as `_ShiftedTapAggregation.forward`, written
    out of place in plain ops (pad, strided slices, multiply, add) that the TorchScript ONNX
    exporter traces. Chosen over `F.unfold` (which exports as a Gather-based im2col): on
    c3/pan/involution at 320 px, 1 thread, ONNX Runtime took 34 ms with this graph and
    188 ms with the unfold one (export: 11 s vs 1.2 s: the tap graph has a few nodes per tap, 49 taps a site).
    """
    grouped_x, grouped_kernel = _grouped(x, kernel, kernel_size)
    out_h, out_w = kernel.shape[-2:]
    windows = _tap_windows(grouped_x, kernel_size, stride, out_h, out_w)
    out = windows[0] * grouped_kernel[:, :, :, 0]
    for tap in range(1, len(windows)):
        out = out + windows[tap] * grouped_kernel[:, :, :, tap]
    return out.reshape(x.shape[0], x.shape[1], out_h, out_w)


class InvolutionAggregation(nn.Module):
    """Per-pixel K×K weighted sum of the input with generated kernels; no parameters.

    forward(x, kernel): x is (B, C, H, W); kernel is (B, G·K², ceil(H/s), ceil(W/s)) with
    the K² taps of group g at channels g·K² … (g+1)·K² − 1, taps in row-major order.
    """

    def __init__(self, kernel_size: int, stride: int = 1) -> None:
        super().__init__()
        if kernel_size < 1 or kernel_size % 2 == 0:
            raise ValueError(f"involution: kernel_size must be odd and >= 1, got {kernel_size}")
        if stride < 1:
            raise ValueError(f"involution: stride must be >= 1, got {stride}")
        self.kernel_size = kernel_size
        self.stride = stride

    def forward(self, x: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
        if _exporting():
            return _plain_tap_aggregation(x, kernel, self.kernel_size, self.stride)
        return _ShiftedTapAggregation.apply(x, kernel, self.kernel_size, self.stride)

    def functional_macs(self, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> int:
        """Multiply-adds of the aggregation: K² per output element (K²·C·H_out·W_out·B)."""
        return self.kernel_size**2 * output.numel()

    def extra_repr(self) -> str:
        return f"kernel_size={self.kernel_size}, stride={self.stride}"


class Involution(nn.Module):
    """involution(C, K, s): C → C channels, output ceil(H/s) × ceil(W/s)."""

    def __init__(
        self,
        channels: int,
        kernel_size: int = 7,
        stride: int = 1,
        reduction: int = 4,
        group_channels: int = 16,
    ) -> None:
        super().__init__()
        if reduction < 1:
            raise ValueError(f"involution: reduction must be >= 1, got {reduction}")
        self.channels = channels
        self.group_channels = channels_per_kernel(channels, group_channels)
        self.groups = channels // self.group_channels
        reduced = max(channels // reduction, MIN_REDUCED_CHANNELS)
        self.aggregate = InvolutionAggregation(kernel_size, stride)
        # ceil_mode keeps the generator's grid equal to the aggregation's on odd sizes.
        self.pool = (
            nn.AvgPool2d(stride, stride, ceil_mode=True) if stride > 1 else nn.Identity()
        )
        self.reduce = Conv(channels, reduced, 1, act=nn.ReLU())
        self.span = nn.Conv2d(reduced, kernel_size**2 * self.groups, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        kernel = self.span(self.reduce(self.pool(x)))
        return self.aggregate(x, kernel)


class InvolutionOperator:
    """The SpatialOperator (lightyolo/models/operators/__init__.py) that gives Involution → BN → act.

    The block's kernel_size and depthwise arguments are ignored: every site gets RedNet's
    K×K involution (7×7 by default), which is already per-group rather than dense.
    """

    def __init__(self, kernel_size: int = 7, reduction: int = 4, group_channels: int = 16) -> None:
        self.kernel_size = kernel_size
        self.reduction = reduction
        self.group_channels = group_channels

    def __call__(
        self, channels: int, kernel_size: int, *, depthwise: bool, act: bool | nn.Module = True
    ) -> nn.Module:
        return nn.Sequential(
            Involution(
                channels,
                self.kernel_size,
                reduction=self.reduction,
                group_channels=self.group_channels,
            ),
            nn.BatchNorm2d(channels, eps=BN_EPS, momentum=BN_MOMENTUM),
            resolve_activation(act),
        )

    def __repr__(self) -> str:
        return (
            f"InvolutionOperator(kernel_size={self.kernel_size}, reduction={self.reduction}, "
            f"group_channels={self.group_channels})"
        )
