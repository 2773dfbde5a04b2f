"""The spatial operator seam (docs/design.md, "Models"); one module per `conf/operator/*.yaml`.

Wherever a block applies a k×k stride-1 spatial op whose input and output channel counts
are equal (a YOLOv5 bottleneck's 3×3, the depthwise convs of Ghost / ShuffleNetV2 /
MobileNetV3 / GSConv), it asks the operator it was given for that op instead of building a
convolution itself. `conf/operator/*.yaml` chooses the operator; blocks receive it as an
argument, there is no global state.

Every operator returns a module that maps (B, C, H, W) → (B, C, H, W) and already includes
its normalisation and the block's activation (`act`: True = SiLU, False = none, or a module
such as nn.ReLU() / nn.Hardswish()).
"""

from __future__ import annotations

from typing import Protocol

from torch import nn


class SpatialOperator(Protocol):
    """Builds the C→C stride-1 spatial op of a block."""

    def __call__(
        self, channels: int, kernel_size: int, *, depthwise: bool, act: bool | nn.Module = True
    ) -> nn.Module: ...
