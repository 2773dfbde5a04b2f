"""YOLOv8's PAN neck with C2f blocks (`neck=c2f_pan`, YOLOv8 layers 10–21).

Reference implementation: ultralytics 8.x `cfg/models/v8/yolov8.yaml` (head section, without
Detect). Unlike YOLOv5's PAN (`necks/pan.py`) it has no lateral 1×1 convs: the upsampled P5
and the top-down P4 are concatenated as they are. Reproduces (shared/weights README,
"Anchor-free head references"): 986,880 params at scale n and 3,939,840 at scale s on the
C2f backbone's taps; outputs 256/512/1024 × width multiple channels at strides 8/16/32.
"""

from __future__ import annotations

import torch
from torch import nn

from lightyolo.models.blocks import C2f
from lightyolo.models.contracts import STRIDES
from lightyolo.models.layers import Conv, scale_depth, scale_width
from lightyolo.models.operators import SpatialOperator

# Output channels at width multiple 1.0, in YOLOv8's layer order (its index on the right).
C2F_PAN_WIDTHS = {
    "csp_p4_top": 512,  # 12  C2f over concat(upsampled P5, P4)
    "csp_p3_out": 256,  # 15  C2f over concat(upsampled, P3) → P3 out
    "down_p3": 256,  # 16  Conv 3×3 s2
    "csp_p4_out": 512,  # 18  C2f over concat(down, csp_p4_top) → P4 out
    "down_p4": 512,  # 19  Conv 3×3 s2
    "csp_p5_out": 1024,  # 21  C2f over concat(down, P5) → P5 out
}
C2F_PAN_REPEATS = 3


class C2fPANNeck(nn.Module):
    """Three backbone maps (strides 8/16/32) → three fused maps at the same strides.

    Layers are registered in YOLOv8's order (model.12 … model.21, skipping the parameter-free
    Upsample/Concat), so its state_dict maps onto them layer by layer."""

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
        width = {name: scale_width(base, width_multiple) for name, base in C2F_PAN_WIDTHS.items()}
        repeats = scale_depth(C2F_PAN_REPEATS, depth_multiple)

        # The neck's C2f blocks have no residual (YOLOv8's `C2f, [c]`).
        self.csp_p4_top = C2f(c5_in + c4_in, width["csp_p4_top"], repeats, operator)
        self.csp_p3_out = C2f(width["csp_p4_top"] + c3_in, width["csp_p3_out"], repeats, operator)
        self.down_p3 = Conv(width["csp_p3_out"], width["down_p3"], 3, 2)
        self.csp_p4_out = C2f(width["down_p3"] + width["csp_p4_top"], width["csp_p4_out"], repeats, operator)
        self.down_p4 = Conv(width["csp_p4_out"], width["down_p4"], 3, 2)
        self.csp_p5_out = C2f(width["down_p4"] + c5_in, width["csp_p5_out"], repeats, operator)
        self.upsample = nn.Upsample(scale_factor=2, mode="nearest")
        self.out_channels: tuple[int, int, int] = (width["csp_p3_out"], width["csp_p4_out"], width["csp_p5_out"])

    def forward(self, features: list[torch.Tensor]) -> list[torch.Tensor]:
        p3, p4, p5 = features
        top_p4 = self.csp_p4_top(torch.cat((self.upsample(p5), p4), 1))
        out_p3 = self.csp_p3_out(torch.cat((self.upsample(top_p4), p3), 1))
        out_p4 = self.csp_p4_out(torch.cat((self.down_p3(out_p3), top_p4), 1))
        out_p5 = self.csp_p5_out(torch.cat((self.down_p4(out_p4), p5), 1))
        return [out_p3, out_p4, out_p5]
