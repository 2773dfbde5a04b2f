"""The YOLOv5 detection loss (ultralytics/yolov5 v6.0–v7.0 `utils/loss.py::ComputeLoss`).

Reproduces YOLOv5's training objective for the anchor-based `Detect` head:

- targets are matched to anchors whose width/height ratio to the box is below `anchor_t`
  (4.0) on every level, and each match is also assigned to the two neighbouring cells whose
  centre lies within half a cell of the box centre (3 cells per target and anchor);
- box loss = 1 − CIoU (Zheng et al., "Distance-IoU Loss", arXiv 1911.08287) of the decoded
  box (xy = 2σ − 0.5, wh = (2σ)² · anchor) against the target;
- objectness target = the detached, non-negative CIoU of each positive (gr = 1.0), BCE with
  logits over every anchor and cell, levels weighted 4.0 / 1.0 / 0.4 (P3 / P4 / P5);
- class loss = BCE with logits against (optionally smoothed) one-hot targets, skipped
  when there is a single class;
- the gains are rescaled the way YOLOv5's `train.py` does (box · 3/nl, cls · nc/80 · 3/nl,
  obj · (img_size/640)² · 3/nl) and the total is multiplied by the batch size.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from lightyolo.train.settings import TrainSettings

# YOLOv5's per-level objectness weights for P3, P4, P5: small-object levels have more cells.
LEVEL_BALANCE = (4.0, 1.0, 0.4)
# A target also goes to a neighbouring cell when its centre is within this much of that edge.
NEIGHBOUR_MARGIN = 0.5
# Cell offsets: the target's own cell, then left, up, right, down neighbours (× margin).
_NEIGHBOUR_OFFSETS = ((0, 0), (1, 0), (0, 1), (-1, 0), (0, -1))


def bbox_ciou(box1: torch.Tensor, box2: torch.Tensor, eps: float = 1e-7) -> torch.Tensor:
    """Complete IoU of paired boxes in (cx, cy, w, h) format, shapes (N, 4) → (N,).

    CIoU = IoU − ρ²/c² − α·v, where ρ is the centre distance, c the diagonal of the smallest
    enclosing box, v = 4/π² (atan(w2/h2) − atan(w1/h1))² the aspect-ratio mismatch and
    α = v / (v − IoU + 1) its weight (held constant in the gradient, as in the paper).
    Ranges over (−1, 1]: 1 for identical boxes, negative for distant disjoint ones.
    """
    (x1, y1, w1, h1), (x2, y2, w2, h2) = box1.unbind(-1), box2.unbind(-1)
    h1, h2 = h1 + eps, h2 + eps  # keeps atan(w/h) finite for degenerate boxes
    left1, right1, top1, bottom1 = x1 - w1 / 2, x1 + w1 / 2, y1 - h1 / 2, y1 + h1 / 2
    left2, right2, top2, bottom2 = x2 - w2 / 2, x2 + w2 / 2, y2 - h2 / 2, y2 + h2 / 2

    inter_w = (torch.minimum(right1, right2) - torch.maximum(left1, left2)).clamp(min=0)
    inter_h = (torch.minimum(bottom1, bottom2) - torch.maximum(top1, top2)).clamp(min=0)
    intersection = inter_w * inter_h
    union = w1 * h1 + w2 * h2 - intersection + eps
    iou = intersection / union

    enclose_w = torch.maximum(right1, right2) - torch.minimum(left1, left2)
    enclose_h = torch.maximum(bottom1, bottom2) - torch.minimum(top1, top2)
    diagonal_sq = enclose_w**2 + enclose_h**2 + eps
    centre_dist_sq = (x2 - x1) ** 2 + (y2 - y1) ** 2
    aspect_mismatch = (4 / math.pi**2) * (torch.atan(w2 / h2) - torch.atan(w1 / h1)) ** 2
    with torch.no_grad():
        alpha = aspect_mismatch / (aspect_mismatch - iou + (1 + eps))
    return iou - (centre_dist_sq / diagonal_sq + aspect_mismatch * alpha)


@dataclass
class LevelTargets:
    """Positives of one pyramid level: where they sit and what they should predict."""

    image: torch.Tensor  # (P,) batch index
    anchor: torch.Tensor  # (P,) anchor index 0..na-1
    grid_y: torch.Tensor  # (P,) cell row
    grid_x: torch.Tensor  # (P,) cell column
    box: torch.Tensor  # (P, 4) target cx, cy relative to the cell's corner, w, h (grid units)
    anchor_wh: torch.Tensor  # (P, 2) the matched anchor (grid units)
    cls: torch.Tensor  # (P,) class index


class YoloLoss:
    """YOLOv5's ComputeLoss for a `Detect` head (module docstring).

    `head` must expose `nc`, `nl`, `na` and the buffer `anchors` (nl, na, 2) in grid units;
    the anchors are read at every call, so the loss follows the head across devices.
    """

    item_names = ("box_loss", "obj_loss", "cls_loss")

    def __init__(
        self,
        head: nn.Module,
        *,
        img_size: int,
        box_gain: float = 0.05,
        obj_gain: float = 1.0,
        cls_gain: float = 0.5,
        anchor_t: float = 4.0,
        label_smoothing: float = 0.0,
        cls_pw: float = 1.0,
        obj_pw: float = 1.0,
    ) -> None:
        for name in ("nc", "nl", "na", "anchors"):
            if not hasattr(head, name):
                raise ValueError(f"YoloLoss: head {type(head).__name__} has no `{name}`")
        if head.nl != len(LEVEL_BALANCE):
            raise ValueError(f"YoloLoss: expected a head with 3 levels, got nl={head.nl}")
        self.head = head
        self.nc: int = head.nc
        self.nl: int = head.nl
        self.na: int = head.na
        level_scale = 3 / self.nl  # YOLOv5's hyps are tuned for 3 levels, 80 classes, 640 px
        self.box_gain = box_gain * level_scale
        self.cls_gain = cls_gain * self.nc / 80 * level_scale
        self.obj_gain = obj_gain * (img_size / 640) ** 2 * level_scale
        self.anchor_t = anchor_t
        self.positive_label = 1.0 - 0.5 * label_smoothing
        self.negative_label = 0.5 * label_smoothing
        self.cls_pw = cls_pw
        self.obj_pw = obj_pw

    @classmethod
    def from_settings(cls, head: nn.Module, settings: TrainSettings) -> YoloLoss:
        """The loss with the run's `train.loss` gains and image size."""
        gains = settings.loss
        return cls(head, img_size=settings.img_size, box_gain=gains.box, obj_gain=gains.obj,
                   cls_gain=gains.cls, anchor_t=gains.anchor_t)

    def __call__(
        self, preds: list[torch.Tensor], targets: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(total · batch size, detached [box, obj, cls]) for raw head outputs and targets.

        preds: nl tensors (B, na, ny, nx, nc + 5) of logits; targets: (N, 6) rows
        [batch_idx, cls, cx, cy, w, h], coordinates normalised to the input image.
        """
        device = preds[0].device
        bce_cls = nn.BCEWithLogitsLoss(pos_weight=torch.tensor([self.cls_pw], device=device))
        bce_obj = nn.BCEWithLogitsLoss(pos_weight=torch.tensor([self.obj_pw], device=device))
        loss_box = torch.zeros(1, device=device)
        loss_obj = torch.zeros(1, device=device)
        loss_cls = torch.zeros(1, device=device)

        for level, (pred, matched) in enumerate(zip(preds, self.build_targets(preds, targets))):
            obj_target = torch.zeros(pred.shape[:4], dtype=pred.dtype, device=device)
            if matched.image.numel():
                positives = pred[matched.image, matched.anchor, matched.grid_y, matched.grid_x]
                pred_xy = positives[:, :2].sigmoid() * 2 - 0.5
                pred_wh = (positives[:, 2:4].sigmoid() * 2) ** 2 * matched.anchor_wh
                ciou = bbox_ciou(torch.cat((pred_xy, pred_wh), 1), matched.box)
                loss_box = loss_box + (1.0 - ciou).mean()
                # gr = 1.0: a positive's objectness target is its (detached) box quality.
                obj_target[matched.image, matched.anchor, matched.grid_y, matched.grid_x] = (
                    ciou.detach().clamp(min=0).to(obj_target.dtype)
                )
                if self.nc > 1:
                    cls_target = torch.full_like(positives[:, 5:], self.negative_label)
                    cls_target[torch.arange(len(matched.cls), device=device), matched.cls] = (
                        self.positive_label
                    )
                    loss_cls = loss_cls + bce_cls(positives[:, 5:], cls_target)
            loss_obj = loss_obj + bce_obj(pred[..., 4], obj_target) * LEVEL_BALANCE[level]

        loss_box = loss_box * self.box_gain
        loss_obj = loss_obj * self.obj_gain
        loss_cls = loss_cls * self.cls_gain
        batch_size = preds[0].shape[0]
        total = (loss_box + loss_obj + loss_cls) * batch_size
        return total.squeeze(0), torch.cat((loss_box, loss_obj, loss_cls)).detach()

    def build_targets(
        self, preds: list[torch.Tensor], targets: torch.Tensor
    ) -> list[LevelTargets]:
        """Assign every target to anchors (wh ratio < anchor_t) and up to 3 cells per level."""
        if targets.ndim != 2 or targets.shape[1] != 6:
            raise ValueError(
                "YoloLoss: targets must be (N, 6) [batch_idx, cls, cx, cy, w, h], "
                f"got shape {tuple(targets.shape)}"
            )
        if len(preds) != self.nl:
            raise ValueError(f"YoloLoss: expected {self.nl} prediction levels, got {len(preds)}")
        device = preds[0].device
        targets = targets.to(device=device, dtype=torch.float32)
        num_targets = targets.shape[0]
        anchor_index = torch.arange(self.na, device=device, dtype=torch.float32)
        # (na, N, 7): every target paired with every anchor, the anchor index appended.
        paired = torch.cat(
            (
                targets.unsqueeze(0).expand(self.na, -1, -1),
                anchor_index.view(self.na, 1, 1).expand(-1, num_targets, 1),
            ),
            2,
        )
        offsets = torch.tensor(_NEIGHBOUR_OFFSETS, device=device).float() * NEIGHBOUR_MARGIN
        all_anchors = self.head.anchors.to(device=device, dtype=torch.float32)

        levels = []
        for level, pred in enumerate(preds):
            anchors = all_anchors[level]
            ny, nx = pred.shape[2], pred.shape[3]
            to_grid = torch.tensor([1, 1, nx, ny, nx, ny, 1], device=device).float()
            scaled = paired * to_grid
            if num_targets:
                scaled, cell_offsets = self._matched_cells(scaled, anchors, nx, ny, offsets)
            else:
                scaled = scaled[0]
                cell_offsets = torch.zeros_like(scaled[:, 2:4])

            centre, size = scaled[:, 2:4], scaled[:, 4:6]
            cell = (centre - cell_offsets).long()
            grid_x = cell[:, 0].clamp(0, nx - 1)
            grid_y = cell[:, 1].clamp(0, ny - 1)
            anchor = scaled[:, 6].long()
            levels.append(
                LevelTargets(
                    image=scaled[:, 0].long(),
                    anchor=anchor,
                    grid_y=grid_y,
                    grid_x=grid_x,
                    box=torch.cat((centre - cell, size), 1),
                    anchor_wh=anchors[anchor],
                    cls=scaled[:, 1].long(),
                )
            )
        return levels

    def _matched_cells(
        self, scaled: torch.Tensor, anchors: torch.Tensor, nx: int, ny: int, offsets: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The (target, anchor) pairs whose wh ratio fits, each repeated for its own cell and
        the up to 2 neighbouring cells its centre is near; with each copy's cell offset."""
        ratio = scaled[..., 4:6] / anchors[:, None]
        fits = torch.max(ratio, 1 / ratio).amax(2) < self.anchor_t
        scaled = scaled[fits]
        centre = scaled[:, 2:4]
        from_far_edge = torch.tensor([nx, ny], device=scaled.device).float() - centre
        # Neighbours only inside the grid (> 1 keeps the shifted cell index ≥ 0).
        near_left, near_top = ((centre % 1 < NEIGHBOUR_MARGIN) & (centre > 1)).T
        near_right, near_bottom = ((from_far_edge % 1 < NEIGHBOUR_MARGIN) & (from_far_edge > 1)).T
        keep = torch.stack((torch.ones_like(near_left), near_left, near_top, near_right, near_bottom))
        scaled = scaled.repeat((len(_NEIGHBOUR_OFFSETS), 1, 1))[keep]
        cell_offsets = (torch.zeros_like(centre)[None] + offsets[:, None])[keep]
        return scaled, cell_offsets
