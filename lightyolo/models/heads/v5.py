"""YOLOv5's anchor-based detection head `Detect` (YOLOv5 v6.0+/v7.0 decode).

Reference implementation: ultralytics/yolov5 v7.0 `models/yolo.py` (Detect and
`_initialize_biases`); anchor boxes as in YOLOv3 (arXiv 1804.02767) with YOLOv5's
(2σ)² width/height decode. Reproduces (docs/references.md): 115,005 params at scale n and 229,245 at
scale s (nc 80), and YOLOv5n's decoded output on the reference input (tests).
"""

from __future__ import annotations

import math

import torch
from torch import nn

# YOLOv5's COCO anchors in pixels (w, h), three per level P3/8, P4/16, P5/32.
YOLOV5_ANCHORS: tuple[tuple[tuple[int, int], ...], ...] = (
    ((10, 13), (16, 30), (33, 23)),
    ((30, 61), (62, 45), (59, 119)),
    ((116, 90), (156, 198), (373, 326)),
)


class Detect(nn.Module):
    """Per level a 1×1 conv to na·(5 + nc); training returns raw maps, eval decodes boxes.

    Buffers: `stride` (nl,) and `anchors` (nl, na, 2) in grid units (pixels / stride), as
    YOLOv5 stores them, so its `model.24.anchors` loads as is.
    """

    objectness = True  # decoded rows carry an objectness column (the evaluator's NMS reads it)
    # The training loss this head's raw maps feed (`lightyolo.train.losses.build_loss`).
    loss = "lightyolo.train.loss.YoloLoss"

    def __init__(
        self,
        nc: int,
        in_channels: tuple[int, ...] | list[int],
        anchors: tuple[tuple[tuple[float, float], ...], ...] = YOLOV5_ANCHORS,
        strides: tuple[int, ...] = (8, 16, 32),
    ) -> None:
        super().__init__()
        if nc < 1:
            raise ValueError(f"Detect: nc must be >= 1, got {nc}")
        if not len(in_channels) == len(anchors) == len(strides):
            raise ValueError(
                f"Detect: in_channels ({len(in_channels)}), anchors ({len(anchors)}) and strides "
                f"({len(strides)}) must have one entry per level"
            )
        self.nc = nc
        self.no = nc + 5
        self.nl = len(anchors)
        self.na = len(anchors[0])
        stride = torch.tensor(strides, dtype=torch.float32)
        anchors_pixels = torch.tensor(anchors, dtype=torch.float32).view(self.nl, self.na, 2)
        # stride follows the module across devices but is not part of YOLOv5's state_dict.
        self.register_buffer("stride", stride, persistent=False)
        self.register_buffer("anchors", anchors_pixels / stride.view(-1, 1, 1))
        self.m = nn.ModuleList(nn.Conv2d(c, self.na * self.no, 1) for c in in_channels)
        self._grids: dict[tuple, torch.Tensor] = {}
        self._initialize_biases()

    def _initialize_biases(self) -> None:
        # Priors: ~8 objects per 640² image spread over the level's cells; ~0.6 class prob.
        with torch.no_grad():
            for conv, s in zip(self.m, self.stride.tolist()):
                bias = conv.bias.view(self.na, self.no)
                bias[:, 4] += math.log(8 / (640 / s) ** 2)
                bias[:, 5 : 5 + self.nc] += math.log(0.6 / (self.nc - 0.99))

    def _grid(self, ny: int, nx: int, like: torch.Tensor) -> torch.Tensor:
        """Cell offsets minus 0.5, (1, 1, ny, nx, 2) as (x, y), cached per size and device."""
        key = (ny, nx, like.device, like.dtype)
        if key not in self._grids:
            y, x = torch.meshgrid(
                torch.arange(ny, device=like.device, dtype=like.dtype),
                torch.arange(nx, device=like.device, dtype=like.dtype),
                indexing="ij",
            )
            self._grids[key] = torch.stack((x, y), 2).view(1, 1, ny, nx, 2) - 0.5
        return self._grids[key]

    def forward(
        self, features: list[torch.Tensor]
    ) -> list[torch.Tensor] | tuple[torch.Tensor, list[torch.Tensor]]:
        raw = []
        for conv, x in zip(self.m, features):
            batch, _, ny, nx = x.shape
            # (B, na·no, ny, nx) → (B, na, ny, nx, no)
            raw.append(conv(x).view(batch, self.na, self.no, ny, nx).permute(0, 1, 3, 4, 2).contiguous())
        if self.training:
            return raw
        decoded = []
        for level, r in enumerate(raw):
            batch, _, ny, nx, _ = r.shape
            # Anchors are not cached: loading weights may replace them.
            anchor_pixels = (self.anchors[level] * self.stride[level]).view(1, self.na, 1, 1, 2)
            xy, wh, scores = r.sigmoid().split((2, 2, self.nc + 1), 4)
            xy = (xy * 2 + self._grid(ny, nx, r)) * self.stride[level]
            wh = (wh * 2) ** 2 * anchor_pixels
            decoded.append(torch.cat((xy, wh, scores), 4).view(batch, self.na * ny * nx, self.no))
        return torch.cat(decoded, 1), raw
