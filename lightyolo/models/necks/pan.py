"""YOLOv5's PAN neck: top-down FPN path then bottom-up path (YOLOv5 v6.0+ layers 10–23).

Path aggregation after PANet (arXiv 1803.01534); reference implementation ultralytics/yolov5
v7.0, `models/yolov5{n,s,m}.yaml` (head section, without Detect). Reproduces
(docs/references.md, "YOLOv5"): 710,784 params at scale n and 2,834,688 at scale s on the C3
backbone's taps; outputs 256/512/1024 × width multiple channels at strides 8/16/32.
"""

from __future__ import annotations

import torch
from torch import nn

from lightyolo.models.blocks import C3
from lightyolo.models.contracts import STRIDES
from lightyolo.models.layers import Conv, scale_depth, scale_width
from lightyolo.models.operators import SpatialOperator

# Output channels at width multiple 1.0, in YOLOv5's layer order (its index on the right).
PAN_WIDTHS = {
    "reduce_p5": 512,  # 10  Conv 1×1 on P5 (lateral, kept for the bottom-up concat)
    "csp_p4_top": 512,  # 13  C3 over concat(upsampled, P4)
    "reduce_p4": 256,  # 14  Conv 1×1 (lateral)
    "csp_p3_out": 256,  # 17  C3 over concat(upsampled, P3) → P3 out
    "down_p3": 256,  # 18  Conv 3×3 s2
    "csp_p4_out": 512,  # 20  C3 over concat(down, reduce_p4) → P4 out
    "down_p4": 512,  # 21  Conv 3×3 s2
    "csp_p5_out": 1024,  # 23  C3 over concat(down, reduce_p5) → P5 out
}
PAN_CSP_REPEATS = 3


class PANNeck(nn.Module):
    """Three backbone maps (strides 8/16/32) → three fused maps at the same strides.

    Its input channels are whatever the backbone declares; its own widths are YOLOv5's base
    widths × width multiple. Layers are registered in YOLOv5's order (model.10 … model.23,
    skipping the parameter-free Upsample/Concat), which the weight loader relies on.
    Subclasses that keep the topology but swap blocks override `conv_layer` / `csp_layer`.
    """

    strides = STRIDES

    def __init__(
        self,
        in_channels: tuple[int, int, int] | list[int],
        width_multiple: float,
        depth_multiple: float,
        operator: SpatialOperator,
    ) -> None:
        super().__init__()
        if len(in_channels) != 3:
            raise ValueError(f"neck in_channels: expected 3 channel counts (P3, P4, P5), got {in_channels!r}")
        c3_in, c4_in, c5_in = (int(c) for c in in_channels)
        self.width_multiple = width_multiple
        self.depth_multiple = depth_multiple
        width = {name: scale_width(base, width_multiple) for name, base in PAN_WIDTHS.items()}
        repeats = scale_depth(PAN_CSP_REPEATS, depth_multiple)

        self.reduce_p5 = self.conv_layer(c5_in, width["reduce_p5"], 1, 1, operator)
        self.csp_p4_top = self.csp_layer(width["reduce_p5"] + c4_in, width["csp_p4_top"], repeats, operator)
        self.reduce_p4 = self.conv_layer(width["csp_p4_top"], width["reduce_p4"], 1, 1, operator)
        self.csp_p3_out = self.csp_layer(width["reduce_p4"] + c3_in, width["csp_p3_out"], repeats, operator)
        self.down_p3 = self.conv_layer(width["csp_p3_out"], width["down_p3"], 3, 2, operator)
        self.csp_p4_out = self.csp_layer(width["down_p3"] + width["reduce_p4"], width["csp_p4_out"], repeats, operator)
        self.down_p4 = self.conv_layer(width["csp_p4_out"], width["down_p4"], 3, 2, operator)
        self.csp_p5_out = self.csp_layer(width["down_p4"] + width["reduce_p5"], width["csp_p5_out"], repeats, operator)
        self.upsample = nn.Upsample(scale_factor=2, mode="nearest")
        self.out_channels: tuple[int, int, int] = (width["csp_p3_out"], width["csp_p4_out"], width["csp_p5_out"])

    def conv_layer(
        self, in_channels: int, out_channels: int, kernel_size: int, stride: int, operator: SpatialOperator
    ) -> nn.Module:
        return Conv(in_channels, out_channels, kernel_size, stride)

    def csp_layer(self, in_channels: int, out_channels: int, repeats: int, operator: SpatialOperator) -> nn.Module:
        # The neck's C3s have no residual (YOLOv5's `C3, [c, False]`).
        return C3(in_channels, out_channels, repeats, operator, shortcut=False)

    def forward(self, features: list[torch.Tensor]) -> list[torch.Tensor]:
        p3, p4, p5 = features
        lateral_p5 = self.reduce_p5(p5)
        top_p4 = self.csp_p4_top(torch.cat((self.upsample(lateral_p5), p4), 1))
        lateral_p4 = self.reduce_p4(top_p4)
        out_p3 = self.csp_p3_out(torch.cat((self.upsample(lateral_p4), p3), 1))
        out_p4 = self.csp_p4_out(torch.cat((self.down_p3(out_p3), lateral_p4), 1))
        out_p5 = self.csp_p5_out(torch.cat((self.down_p4(out_p4), lateral_p5), 1))
        return [out_p3, out_p4, out_p5]
