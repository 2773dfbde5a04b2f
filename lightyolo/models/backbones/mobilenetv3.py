"""MobileNetV3 backbone (Large / Small): stem + inverted-residual blocks up to the P5 tap.

Paper: Howard et al., "Searching for MobileNetV3" (arXiv 1905.02244), Tables 1 (Large) and 2
(Small). Block layout matches torchvision's `mobilenet_v3_*().features`, which counts the
stem as block 0; the last 1×1 conv and the classifier are not built.

Reproduces (docs/references.md, "MobileNetV3"): 2,816,432 params (Large, `features[:16]`) and
870,560 (Small, `features[:12]`) with the default ConvOperator; about 3.5 / 0.9 GFLOPs at
640×640. BatchNorm uses YOLOv5's eps/momentum (layers.Conv), which leaves the counts unchanged.

Scale: YOLOv5's width multiple only picks the variant when `variant` is not given
(>= 0.5 → large, below → small). The depth multiple is accepted for the backbone seam but
does not change the paper's tables.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import nn

from lightyolo.models.contracts import STRIDES
from lightyolo.models.blocks import InvertedResidual
from lightyolo.models.layers import Conv
from lightyolo.models.operators import SpatialOperator

STEM_CHANNELS = 16


class BlockSpec(NamedTuple):
    kernel: int
    expansion: int  # channels after the 1×1 expand ("exp size" in the paper)
    out: int
    se: bool
    nl: str  # nonlinearity: "RE" (ReLU) or "HS" (hard-swish)
    stride: int


class VariantSpec(NamedTuple):
    blocks: tuple[BlockSpec, ...]
    taps: tuple[int, int, int]  # block indices (stem = 0) whose outputs are P3/P4/P5


B = BlockSpec
VARIANTS: dict[str, VariantSpec] = {
    # Table 1, bneck rows up to the last 160-channel block.
    "large": VariantSpec(
        blocks=(
            # k, exp, out,  se,    nl,  s
            B(3, 16, 16, False, "RE", 1),  # 1
            B(3, 64, 24, False, "RE", 2),  # 2
            B(3, 72, 24, False, "RE", 1),  # 3
            B(5, 72, 40, True, "RE", 2),  # 4
            B(5, 120, 40, True, "RE", 1),  # 5
            B(5, 120, 40, True, "RE", 1),  # 6  P3/8
            B(3, 240, 80, False, "HS", 2),  # 7
            B(3, 200, 80, False, "HS", 1),  # 8
            B(3, 184, 80, False, "HS", 1),  # 9
            B(3, 184, 80, False, "HS", 1),  # 10
            B(3, 480, 112, True, "HS", 1),  # 11
            B(3, 672, 112, True, "HS", 1),  # 12 P4/16
            B(5, 672, 160, True, "HS", 2),  # 13
            B(5, 960, 160, True, "HS", 1),  # 14
            B(5, 960, 160, True, "HS", 1),  # 15 P5/32
        ),
        taps=(6, 12, 15),
    ),
    # Table 2, bneck rows up to the last 96-channel block.
    "small": VariantSpec(
        blocks=(
            # k, exp, out,  se,    nl,  s
            B(3, 16, 16, True, "RE", 2),  # 1
            B(3, 72, 24, False, "RE", 2),  # 2
            B(3, 88, 24, False, "RE", 1),  # 3  P3/8
            B(5, 96, 40, True, "HS", 2),  # 4
            B(5, 240, 40, True, "HS", 1),  # 5
            B(5, 240, 40, True, "HS", 1),  # 6
            B(5, 120, 48, True, "HS", 1),  # 7
            B(5, 144, 48, True, "HS", 1),  # 8  P4/16
            B(5, 288, 96, True, "HS", 2),  # 9
            B(5, 576, 96, True, "HS", 1),  # 10
            B(5, 576, 96, True, "HS", 1),  # 11 P5/32
        ),
        taps=(3, 8, 11),
    ),
}
del B


def activation(nl: str) -> nn.Module:
    """A fresh activation module for the paper's NL column."""
    if nl == "RE":
        return nn.ReLU(inplace=True)
    if nl == "HS":
        return nn.Hardswish(inplace=True)
    raise ValueError(f"MobileNetV3 block spec: nl must be 'RE' or 'HS', got {nl!r}")


def inverted_residual(in_channels: int, spec: BlockSpec, operator: SpatialOperator) -> InvertedResidual:
    """The bneck block of one table row."""
    return InvertedResidual(
        in_channels, spec.out, kernel_size=spec.kernel, hidden=spec.expansion, stride=spec.stride,
        se=spec.se, act=lambda: activation(spec.nl), operator=operator,
    )


def resolve_variant(variant: str | None, width_multiple: float) -> str:
    """The table to build: `variant` if given, else chosen from YOLOv5's width multiple."""
    if variant is None:
        return "large" if width_multiple >= 0.5 else "small"
    if variant not in VARIANTS:
        valid = ", ".join(VARIANTS)
        raise ValueError(
            f"conf/backbone/mobilenetv3.yaml: variant={variant!r} is not one of {valid} (or null)"
        )
    return variant


class MobileNetV3Backbone(nn.Module):
    """Image → the P3/8, P4/16, P5/32 block outputs of MobileNetV3 Large or Small."""

    strides = STRIDES

    def __init__(
        self,
        width_multiple: float,
        depth_multiple: float,
        operator: SpatialOperator,
        in_channels: int = 3,
        variant: str | None = None,
    ) -> None:
        super().__init__()
        self.variant = resolve_variant(variant, width_multiple)
        spec = VARIANTS[self.variant]
        layers: list[nn.Module] = [
            Conv(in_channels, STEM_CHANNELS, 3, 2, act=nn.Hardswish(inplace=True))
        ]
        channels = STEM_CHANNELS
        for block in spec.blocks:
            layers.append(inverted_residual(channels, block, operator))
            channels = block.out
        # Indexed like torchvision's `features`: stem = 0, block i = i.
        self.features = nn.Sequential(*layers)
        self.taps = spec.taps
        self.out_channels: tuple[int, int, int] = tuple(
            spec.blocks[index - 1].out for index in spec.taps
        )

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        taps = []
        for index, layer in enumerate(self.features):
            x = layer(x)
            if index in self.taps:
                taps.append(x)
        return taps
