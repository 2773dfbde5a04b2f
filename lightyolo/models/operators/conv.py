"""The `conv` operator (conf/operator/conv.yaml): the blocks' own k×k convolution.

The seam itself (which sites ask for an operator, what it returns) is described in
`lightyolo/models/operators/__init__.py`.
"""

from __future__ import annotations

from torch import nn

from lightyolo.models.layers import Conv


class ConvOperator:
    """The block's own convolution: Conv k×k (dense or depthwise) → BN → act."""

    def __call__(
        self, channels: int, kernel_size: int, *, depthwise: bool, act: bool | nn.Module = True
    ) -> nn.Module:
        groups = channels if depthwise else 1
        return Conv(channels, channels, kernel_size, 1, groups=groups, act=act)

    def __repr__(self) -> str:
        return "ConvOperator()"
