"""YOLOv8's backbone: CSP-Darknet with C2f blocks and SPPF (`backbone=c2f`, YOLOv8 layers 0–9).

Reference implementation: ultralytics 8.x `cfg/models/v8/yolov8.yaml` (backbone section) with
`nn/modules/block.py`'s C2f and SPPF. YOLOv5's layout (`backbones/c3.py`) with a 3×3 stem and
C2f in place of C3. Reproduces (docs/heads.md):
1,272,656 params at scale n and 5,079,712 at scale s. At scale m YOLOv8 caps the widest
layers at 768 channels before the width multiple; this backbone does not (1024 × 0.75).
"""

from __future__ import annotations

from torch import nn

from lightyolo.models.backbones.c3 import C3Backbone, LayerSpec
from lightyolo.models.blocks import C2f
from lightyolo.models.layers import Conv
from lightyolo.models.operators import SpatialOperator

# yolov8{n,s}.yaml backbone, read top to bottom (the index is YOLOv8's layer index).
C2F_BACKBONE = (
    #        kind     out   n   k  s  tap
    LayerSpec("stem", 64, 1, 3, 2, False),  # 0  P1/2
    LayerSpec("down", 128, 1, 3, 2, False),  # 1  P2/4
    LayerSpec("csp", 128, 3, 3, 1, False),  # 2
    LayerSpec("down", 256, 1, 3, 2, False),  # 3  P3/8
    LayerSpec("csp", 256, 6, 3, 1, True),  # 4  P3 tap
    LayerSpec("down", 512, 1, 3, 2, False),  # 5  P4/16
    LayerSpec("csp", 512, 6, 3, 1, True),  # 6  P4 tap
    LayerSpec("down", 1024, 1, 3, 2, False),  # 7  P5/32
    LayerSpec("csp", 1024, 3, 3, 1, False),  # 8
    LayerSpec("sppf", 1024, 1, 5, 1, True),  # 9  P5 tap
)


class C2fBackbone(C3Backbone):
    """YOLOv8's backbone: image → [P3/8, P4/16, P5/32]; `layers.i` is YOLOv8's `model.i`."""

    table = C2F_BACKBONE

    def stem_layer(self, in_channels: int, out_channels: int, kernel_size: int, stride: int) -> nn.Module:
        return Conv(in_channels, out_channels, kernel_size, stride)  # YOLOv8: a plain 3×3 stride-2 conv

    def csp_layer(self, in_channels: int, out_channels: int, repeats: int, operator: SpatialOperator) -> nn.Module:
        return C2f(in_channels, out_channels, repeats, operator, shortcut=True)
