"""The task-aligned assigner (TOOD, Feng et al., arXiv 2108.07755) as YOLOv8 trains with it.

Reference implementation: ultralytics 8.x `utils/tal.py::TaskAlignedAssigner` (YOLOv8's
version: candidates are the cells whose centre lies inside the object's box). For every object:

1. alignment metric of each candidate cell = s^α · u^β, where s is the cell's predicted
   score for the object's class and u the CIoU (clamped at 0) of its predicted box with the
   object's box; α = 0.5, β = 6.0;
2. the top-k (10) cells by that metric inside the box are the object's positives;
3. a cell that is positive for several objects keeps the one its predicted box overlaps most;
4. each positive's class target is the one-hot class scaled by its metric, normalised per
   object so that the object's best cell gets the object's best IoU.

`select_candidates_in_gts` of later ultralytics releases also enlarges boxes smaller than
the finest stride for step 2's candidates (YOLO11/26); YOLOv8 did not, and neither does this.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from lightyolo.train.loss import bbox_ciou


@dataclass
class Assignment:
    """Per cell (B, A): its target box (xyxy, the caller's units), class target scores (B, A, nc),
    whether it is a positive, and the index of its object in the padded targets."""

    boxes: torch.Tensor
    scores: torch.Tensor
    foreground: torch.Tensor
    object_index: torch.Tensor


def xyxy_ciou(box1: torch.Tensor, box2: torch.Tensor) -> torch.Tensor:
    """CIoU (`loss.bbox_ciou`) of paired (..., 4) x1, y1, x2, y2 boxes → (...)."""
    def centre_size(box: torch.Tensor) -> torch.Tensor:
        return torch.cat(((box[..., :2] + box[..., 2:]) / 2, box[..., 2:] - box[..., :2]), -1)

    return bbox_ciou(centre_size(box1), centre_size(box2))


class TaskAlignedAssigner:
    """Assigns padded targets to cells (module docstring); `topk`, `alpha`, `beta` as in TOOD."""

    def __init__(self, num_classes: int, *, topk: int = 10, alpha: float = 0.5, beta: float = 6.0,
                 eps: float = 1e-9) -> None:
        if topk < 1:
            raise ValueError(f"train.loss.topk: expected >= 1 candidate cells per object, got {topk}")
        self.num_classes = num_classes
        self.topk = topk
        self.alpha = alpha
        self.beta = beta
        self.eps = eps

    @torch.no_grad()
    def __call__(
        self,
        pred_scores: torch.Tensor,
        pred_boxes: torch.Tensor,
        points: torch.Tensor,
        gt_labels: torch.Tensor,
        gt_boxes: torch.Tensor,
        gt_mask: torch.Tensor,
    ) -> Assignment:
        """pred_scores (B, A, nc) after the sigmoid; pred_boxes (B, A, 4) xyxy; points (A, 2) cell
        centres; gt_labels (B, M, 1), gt_boxes (B, M, 4) xyxy and gt_mask (B, M, 1) (1 = a real
        object, 0 = padding); boxes and points in the same units (pixels)."""
        batch, cells, _ = pred_scores.shape
        objects = gt_boxes.shape[1]
        if objects == 0:
            return Assignment(
                torch.zeros_like(pred_boxes), torch.zeros_like(pred_scores),
                torch.zeros(batch, cells, dtype=torch.bool, device=pred_scores.device),
                torch.zeros(batch, cells, dtype=torch.long, device=pred_scores.device),
            )
        inside = self._cells_inside(points, gt_boxes)  # (B, M, A)
        candidates = (inside * gt_mask).bool()
        metric, overlaps = self._alignment(pred_scores, pred_boxes, gt_labels, gt_boxes, candidates)
        positive = self._top_k(metric, gt_mask.bool()) * inside * gt_mask
        object_index, foreground, positive = self._resolve_conflicts(positive, overlaps)

        flat_index = object_index + torch.arange(batch, device=object_index.device)[:, None] * objects
        labels = gt_labels.long().flatten()[flat_index].clamp_(0)  # (B, A)
        boxes = gt_boxes.view(-1, 4)[flat_index]  # (B, A, 4)
        scores = torch.nn.functional.one_hot(labels, self.num_classes) * (foreground[..., None] > 0)

        # Normalise each object's metrics so its best cell's target equals its best IoU.
        metric = metric * positive
        best_metric = metric.amax(-1, keepdim=True)
        best_overlap = (overlaps * positive).amax(-1, keepdim=True)
        scale = (metric * best_overlap / (best_metric + self.eps)).amax(-2).unsqueeze(-1)
        return Assignment(boxes, scores * scale, foreground > 0, object_index)

    def _cells_inside(self, points: torch.Tensor, gt_boxes: torch.Tensor) -> torch.Tensor:
        """(B, M, A): 1 where the cell centre lies strictly inside the object's box."""
        top_left, bottom_right = gt_boxes[..., None, :2], gt_boxes[..., None, 2:]
        margins = torch.cat((points - top_left, bottom_right - points), -1)  # (B, M, A, 4)
        return (margins.amin(-1) > self.eps).to(gt_boxes.dtype)

    def _alignment(
        self, pred_scores: torch.Tensor, pred_boxes: torch.Tensor, gt_labels: torch.Tensor,
        gt_boxes: torch.Tensor, candidates: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(metric s^α·u^β, CIoU u), each (B, M, A), zero outside the candidates."""
        batch, objects, cells = candidates.shape
        overlaps = torch.zeros(candidates.shape, dtype=pred_boxes.dtype, device=pred_boxes.device)
        class_scores = torch.zeros(candidates.shape, dtype=pred_scores.dtype, device=pred_scores.device)
        image = torch.arange(batch, device=pred_scores.device).view(-1, 1).expand(-1, objects)
        # (B, M, A): each cell's score for each object's class
        class_scores[candidates] = pred_scores[image, :, gt_labels.squeeze(-1).long()][candidates]
        pred = pred_boxes.unsqueeze(1).expand(-1, objects, -1, -1)[candidates]
        target = gt_boxes.unsqueeze(2).expand(-1, -1, cells, -1)[candidates]
        overlaps[candidates] = xyxy_ciou(target, pred).clamp_(0).to(overlaps.dtype)
        return class_scores.pow(self.alpha) * overlaps.pow(self.beta), overlaps

    def _top_k(self, metric: torch.Tensor, gt_mask: torch.Tensor) -> torch.Tensor:
        """(B, M, A): 1 at each real object's `topk` best cells by metric."""
        top = torch.topk(metric, self.topk, dim=-1, largest=True).indices
        top = top.masked_fill(~gt_mask.expand_as(top), 0)
        counts = torch.zeros(metric.shape, dtype=torch.int8, device=metric.device)
        counts.scatter_add_(-1, top, torch.ones_like(top, dtype=torch.int8))
        return (counts == 1).to(metric.dtype)  # padding objects point k times at cell 0: dropped

    @staticmethod
    def _resolve_conflicts(
        positive: torch.Tensor, overlaps: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """A cell positive for several objects keeps the object with the highest overlap.
        Returns (object index (B, A), positives per cell (B, A), the resolved mask (B, M, A))."""
        per_cell = positive.sum(-2)
        if per_cell.max() > 1:
            shared = (per_cell.unsqueeze(1) > 1).expand_as(positive)
            best = torch.zeros_like(positive).scatter_(1, overlaps.argmax(1, keepdim=True), 1)
            positive = torch.where(shared, best, positive).float()
            per_cell = positive.sum(-2)
        return positive.argmax(-2), per_cell, positive
