"""ShuffleNetV2 backbone (stem + stages 2-4, no conv5 and no classifier).

Paper: Ma et al., "ShuffleNet V2: Practical Guidelines for Efficient CNN Architecture Design"
(arXiv 1807.11164), Table 5 and Figure 3(c)/(d). Layer layout matches torchvision's
`shufflenet_v2_x*` (`conv1` + `stage2..4`).

Reproduces (docs/references.md, "ShuffleNetV2"): 776,420 params at 1.0× and 143,136 at 0.5×
(default ConvOperator); about 2.0 / 0.5 GFLOPs at 640×640.

Scale: YOLOv5's width multiple only picks the paper's width when `width` is not given
(>= 0.5 → 1.0×, below → 0.5×). The depth multiple is accepted for the backbone seam but does
not change the paper's unit counts (4, 8, 4): the network is only defined at those depths.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import nn

from lightyolo.models.blocks import channel_shuffle
from lightyolo.models.contracts import STRIDES
from lightyolo.models.layers import Conv
from lightyolo.models.operators import SpatialOperator

STEM_CHANNELS = 24
# Table 5: units per stage (stage2, stage3, stage4); the first unit of each has stride 2.
STAGE_UNITS = (4, 8, 4)
# Table 5: output channels of stage2, stage3, stage4 per network width.
STAGE_CHANNELS: dict[float, tuple[int, int, int]] = {
    0.5: (48, 96, 192),
    1.0: (116, 232, 464),
    1.5: (176, 352, 704),
    2.0: (244, 488, 976),
}
GROUPS = 2  # channel shuffle groups (the two branches)


class StageSpec(NamedTuple):
    units: int
    out_channels: int


def _relu() -> nn.Module:
    return nn.ReLU(inplace=True)


class ShuffleUnit(nn.Module):
    """One ShuffleNetV2 unit: Figure 3(c) at stride 1, Figure 3(d) at stride 2.

    Stride 1: split channels in half; one half passes through, the other goes 1×1 → depthwise
    3×3 (linear, from the operator) → 1×1. Stride 2: both branches see the whole input and
    downsample (branch1: depthwise 3×3 s2 → 1×1; branch2: 1×1 → depthwise 3×3 s2 → 1×1).
    Then concat and channel shuffle.
    """

    def __init__(
        self, in_channels: int, out_channels: int, stride: int, operator: SpatialOperator
    ) -> None:
        super().__init__()
        if stride not in (1, 2):
            raise ValueError(f"ShuffleUnit: stride must be 1 or 2, got {stride}")
        if stride == 1 and in_channels != out_channels:
            raise ValueError(
                "ShuffleUnit: stride 1 needs in_channels == out_channels, "
                f"got {in_channels} → {out_channels}"
            )
        self.stride = stride
        branch_channels = out_channels // 2
        if stride == 2:
            self.branch1: nn.Module = nn.Sequential(
                Conv(in_channels, in_channels, 3, 2, groups=in_channels, act=False),
                Conv(in_channels, branch_channels, 1, 1, act=_relu()),
            )
            branch2_in = in_channels
            # A stride-2 depthwise conv changes the size, so it is not an operator site.
            depthwise = Conv(branch_channels, branch_channels, 3, 2, groups=branch_channels, act=False)
        else:
            self.branch1 = nn.Identity()
            branch2_in = branch_channels
            depthwise = operator(branch_channels, 3, depthwise=True, act=False)
        self.branch2 = nn.Sequential(
            Conv(branch2_in, branch_channels, 1, 1, act=_relu()),
            depthwise,
            Conv(branch_channels, branch_channels, 1, 1, act=_relu()),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.stride == 1:
            passthrough, x = x.chunk(2, dim=1)
            out = torch.cat((passthrough, self.branch2(x)), 1)
        else:
            out = torch.cat((self.branch1(x), self.branch2(x)), 1)
        return channel_shuffle(out, GROUPS)


def resolve_width(width: float | None, width_multiple: float) -> float:
    """The paper width to build: `width` if given, else chosen from YOLOv5's width multiple."""
    if width is None:
        return 1.0 if width_multiple >= 0.5 else 0.5
    if width not in STAGE_CHANNELS:
        valid = ", ".join(str(w) for w in STAGE_CHANNELS)
        raise ValueError(
            f"conf/backbone/shufflenetv2.yaml: width={width!r} is not one of {valid} (or null)"
        )
    return float(width)


class ShuffleNetV2Backbone(nn.Module):
    """Image → [stage2 (/8), stage3 (/16), stage4 (/32)] maps of ShuffleNetV2."""

    strides = STRIDES

    def __init__(
        self,
        width_multiple: float,
        depth_multiple: float,
        operator: SpatialOperator,
        in_channels: int = 3,
        width: float | None = None,
    ) -> None:
        super().__init__()
        self.width = resolve_width(width, width_multiple)
        specs = [
            StageSpec(units, channels)
            for units, channels in zip(STAGE_UNITS, STAGE_CHANNELS[self.width])
        ]
        self.stem = nn.Sequential(
            Conv(in_channels, STEM_CHANNELS, 3, 2, act=_relu()),
            nn.MaxPool2d(kernel_size=3, stride=2, padding=1),
        )
        channels = STEM_CHANNELS
        stages = []
        for spec in specs:
            units = [ShuffleUnit(channels, spec.out_channels, 2, operator)]
            units += [
                ShuffleUnit(spec.out_channels, spec.out_channels, 1, operator)
                for _ in range(spec.units - 1)
            ]
            stages.append(nn.Sequential(*units))
            channels = spec.out_channels
        self.stages = nn.ModuleList(stages)
        self.out_channels: tuple[int, int, int] = tuple(spec.out_channels for spec in specs)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = self.stem(x)
        taps = []
        for stage in self.stages:
            x = stage(x)
            taps.append(x)
        return taps
