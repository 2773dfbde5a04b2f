"""YOLOv8's anchor-free decoupled detection head with Distribution Focal Loss (`head=v8`).

Reference implementation: ultralytics 8.x `nn/modules/head.py::Detect` (the "legacy" v8
layout: both branches Conv 3×3 → Conv 3×3 → Conv2d 1×1) and `nn/modules/block.py::DFL`;
Generalized Focal Loss's distribution regression (Li et al., arXiv 2006.04388). Each level
has a box branch giving 4 sides × `reg_max` bins (the distances from the cell centre to the
box's left, top, right and bottom edges, in stride units, as a distribution over 0..reg_max-1)
and a class branch giving nc logits; there is no objectness. Reproduces (docs/heads.md):
897,664 params on YOLOv5n's neck (nc 80, the DFL's
16 fixed weights included) and ultralytics' training and decoded outputs (tests).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from lightyolo.models.layers import Conv

REG_MAX = 16  # DFL bins per box side (YOLOv8)


class DFL(nn.Module):
    """Distribution → distance: softmax over each side's `reg_max` bins, then their expectation.

    The expectation is a fixed 1×1 conv whose weights are the bin values 0..reg_max-1 (not
    trained, as in YOLOv8; stored in the state dict so its checkpoints load as they are)."""

    frozen_by_design = True  # its weights count as parameters (measure/params.py), as YOLOv8's do

    def __init__(self, reg_max: int = REG_MAX) -> None:
        super().__init__()
        self.reg_max = reg_max
        self.conv = nn.Conv2d(reg_max, 1, 1, bias=False).requires_grad_(False)
        with torch.no_grad():
            self.conv.weight.copy_(torch.arange(reg_max, dtype=torch.float32).view(1, reg_max, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 4·reg_max, A) logits → (B, 4, A) distances in bins."""
        batch, _, anchors = x.shape
        bins = x.view(batch, 4, self.reg_max, anchors).transpose(2, 1).softmax(1)
        return self.conv(bins).view(batch, 4, anchors)


def anchor_points(sizes: list[tuple[int, int]], strides: list[float], like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Cell centres of every level, (A, 2) as (x, y) in grid units, and each one's stride (A, 1).

    Levels in order, cells row-major: the order of the head's concatenated outputs."""
    points, point_strides = [], []
    for (height, width), stride in zip(sizes, strides):
        y, x = torch.meshgrid(
            torch.arange(height, device=like.device, dtype=like.dtype) + 0.5,
            torch.arange(width, device=like.device, dtype=like.dtype) + 0.5,
            indexing="ij",
        )
        points.append(torch.stack((x, y), -1).view(-1, 2))
        point_strides.append(torch.full((height * width, 1), float(stride), device=like.device, dtype=like.dtype))
    return torch.cat(points), torch.cat(point_strides)


def dist_to_xywh(distances: torch.Tensor, points: torch.Tensor, dim: int = -1) -> torch.Tensor:
    """Distances (left, top, right, bottom) from `points` → boxes (cx, cy, w, h) along `dim`."""
    left_top, right_bottom = distances.chunk(2, dim)
    top_left_corner = points - left_top
    bottom_right_corner = points + right_bottom
    return torch.cat(((top_left_corner + bottom_right_corner) / 2, bottom_right_corner - top_left_corner), dim)


class AnchorFreeDetect(nn.Module):
    """YOLOv8's Detect: per level `cv2` (box, 4·reg_max) and `cv3` (class, nc) branches.

    Training returns the per-level maps (B, 4·reg_max + nc, H, W) the loss reads; eval returns
    `(decoded, raw)` with `decoded` (B, A, 4 + nc): box centre x, centre y, width, height in
    input pixels, then nc class scores after the sigmoid, one row per cell, levels P3, P4, P5
    in order, rows row-major (the transpose of ultralytics' (B, 4 + nc, A)). Attribute names
    follow ultralytics' (`cv2`, `cv3`, `dfl`), so its head tensors map by name.
    """

    objectness = False  # decoded rows carry an objectness column (the evaluator's NMS reads it)
    # The training loss this head's maps feed (`lightyolo.train.losses.build_loss`).
    loss = "lightyolo.train.anchor_free_loss.AnchorFreeLoss"

    def __init__(
        self,
        nc: int,
        in_channels: tuple[int, ...] | list[int],
        strides: tuple[int, ...] = (8, 16, 32),
        reg_max: int = REG_MAX,
    ) -> None:
        super().__init__()
        if nc < 1:
            raise ValueError(f"AnchorFreeDetect: nc must be >= 1, got {nc}")
        if len(in_channels) != len(strides):
            raise ValueError(
                f"AnchorFreeDetect: in_channels ({len(in_channels)}) and strides ({len(strides)}) "
                "must have one entry per level"
            )
        if reg_max < 2:
            raise ValueError(f"head.reg_max: expected >= 2 DFL bins, got {reg_max}")
        self.nc = nc
        self.reg_max = reg_max
        self.register_buffer("stride", torch.tensor(strides, dtype=torch.float32), persistent=False)
        # YOLOv8's branch widths: from the finest level's channels, at least 4·reg_max / nc (≤ 100).
        box_width = max(16, in_channels[0] // 4, 4 * reg_max)
        cls_width = max(in_channels[0], min(nc, 100))
        self.cv2 = nn.ModuleList(self.box_branch(c, box_width) for c in in_channels)
        self.cv3 = nn.ModuleList(self.class_branch(c, cls_width) for c in in_channels)
        self.dfl = DFL(reg_max)
        self._initialize_biases()

    def box_branch(self, in_channels: int, width: int) -> nn.Sequential:
        """One level's box branch, ending in a Conv2d to 4·reg_max (a subclass may lighten it)."""
        return nn.Sequential(Conv(in_channels, width, 3), Conv(width, width, 3), nn.Conv2d(width, 4 * self.reg_max, 1))

    def class_branch(self, in_channels: int, width: int) -> nn.Sequential:
        """One level's class branch, ending in a Conv2d to nc (a subclass may lighten it)."""
        return nn.Sequential(Conv(in_channels, width, 3), Conv(width, width, 3), nn.Conv2d(width, self.nc, 1))

    def _initialize_biases(self) -> None:
        # YOLOv8's priors: box bins start even (bias 1), classes at ~5 objects per 640² image.
        with torch.no_grad():
            for box, cls, stride in zip(self.cv2, self.cv3, self.stride.tolist()):
                box[-1].bias.fill_(1.0)
                cls[-1].bias.fill_(math.log(5 / self.nc / (640 / stride) ** 2))

    def forward(
        self, features: list[torch.Tensor]
    ) -> list[torch.Tensor] | tuple[torch.Tensor, list[torch.Tensor]]:
        raw = [torch.cat((box(x), cls(x)), 1) for box, cls, x in zip(self.cv2, self.cv3, features)]
        if self.training:
            return raw
        return self.decode(raw), raw

    def cell_centres(self, raw: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """The (A, 2) cell centres (grid units) and (A, 1) strides of per-level maps `raw`."""
        return anchor_points([tuple(level.shape[2:4]) for level in raw], self.stride.tolist(), raw[0])

    def split(self, raw: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-level maps → (box logits (B, 4·reg_max, A), class logits (B, nc, A)), levels concatenated."""
        flat = torch.cat([level.flatten(2) for level in raw], 2)
        return flat.split((4 * self.reg_max, self.nc), 1)

    def decode(self, raw: list[torch.Tensor]) -> torch.Tensor:
        """(B, A, 4 + nc): xywh in input pixels (DFL expectation around each cell centre) and sigmoid scores."""
        box_logits, cls_logits = self.split(raw)
        points, point_strides = self.cell_centres(raw)
        boxes = dist_to_xywh(self.dfl(box_logits), points.T.unsqueeze(0), dim=1) * point_strides.T
        return torch.cat((boxes, cls_logits.sigmoid()), 1).transpose(1, 2)
