"""YOLOv8's detection loss for the anchor-free head (`head=v8`, `models/heads/v8.py`).

Reference implementation: ultralytics 8.x `utils/loss.py` (`v8DetectionLoss`, `BboxLoss`,
`DFLoss`). Per batch:

- targets are padded per image and scaled to input pixels; the task-aligned assigner
  (`train/assigner.py`) picks each object's positive cells and their soft class targets;
- class loss = BCE with logits of every cell and class against those soft targets, summed and
  divided by the sum of the targets (not by the number of cells: most cells are background);
- box loss = 1 − CIoU of each positive's decoded box, weighted by its target score;
- DFL (Distribution Focal Loss, arXiv 2006.04388) = cross-entropy of each side's bin
  distribution against the two bins around the target distance (interpolated), weighted
  the same way; boxes decode with the fixed bin values 0..reg_max-1;
- gains box 7.5, cls 0.5, dfl 1.5 (no rescaling by classes, levels or image size, unlike
  YOLOv5's), and the total is multiplied by the batch size.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from lightyolo.train.assigner import TaskAlignedAssigner, xyxy_ciou
from lightyolo.train.settings import TrainSettings


def padded_targets(
    targets: torch.Tensor, batch_size: int, image_wh: tuple[float, float]
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(N, 6) rows [batch_idx, cls, cx, cy, w, h] (normalised) → per image, padded to the
    most objects any image has: labels (B, M, 1), xyxy boxes in pixels (B, M, 4), mask (B, M, 1)."""
    device = targets.device
    if len(targets) == 0:
        empty = torch.zeros(batch_size, 0, 1, device=device)
        return empty, torch.zeros(batch_size, 0, 4, device=device), empty
    images = targets[:, 0].long()
    per_image = torch.bincount(images, minlength=batch_size)
    rows = torch.zeros(batch_size, int(per_image.max()), 5, device=device)
    order = torch.sort(images, stable=True).indices
    first_of_image = torch.cumsum(per_image, 0) - per_image
    slot = torch.arange(len(order), device=device) - first_of_image[images[order]]
    rows[images[order], slot] = targets[order, 1:].float()
    to_pixels = rows.new_tensor([image_wh[0], image_wh[1]])
    centre, size = rows[..., 1:3] * to_pixels, rows[..., 3:5] * to_pixels
    boxes = torch.cat((centre - size / 2, centre + size / 2), -1)
    mask = (boxes.sum(-1, keepdim=True) > 0).float()  # padding rows are all zeros
    return rows[..., :1], boxes, mask


def distribution_focal_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean over the 4 sides of the DFL: logits (P·4, reg_max), target distances (P, 4) in bins → (P, 1)."""
    left = target.long()
    right_weight = target - left
    left_loss = F.cross_entropy(logits, left.view(-1), reduction="none").view(left.shape)
    right_loss = F.cross_entropy(logits, (left + 1).view(-1), reduction="none").view(left.shape)
    return (left_loss * (1 - right_weight) + right_loss * right_weight).mean(-1, keepdim=True)


class AnchorFreeLoss:
    """YOLOv8's loss for an `AnchorFreeDetect` head (module docstring). Called like `YoloLoss`:
    `(per-level maps, targets (N, 6)) → (total · batch size, detached [box, cls, dfl])`.
    It reads the head through `nc`, `reg_max`, `stride`, `split` and `cell_centres` only
    (train/ imports nothing from models/)."""

    item_names = ("box_loss", "cls_loss", "dfl_loss")

    def __init__(
        self,
        head: nn.Module,
        *,
        box_gain: float = 7.5,
        cls_gain: float = 0.5,
        dfl_gain: float = 1.5,
        topk: int = 10,
        alpha: float = 0.5,
        beta: float = 6.0,
    ) -> None:
        for name in ("nc", "reg_max", "stride", "split", "cell_centres"):
            if not hasattr(head, name):
                raise ValueError(f"AnchorFreeLoss: head {type(head).__name__} has no `{name}`")
        self.head = head
        self.gains = (box_gain, cls_gain, dfl_gain)
        self.assigner = TaskAlignedAssigner(head.nc, topk=topk, alpha=alpha, beta=beta)

    @classmethod
    def from_settings(cls, head: nn.Module, settings: TrainSettings) -> AnchorFreeLoss:
        """The loss with the run's `train.loss` keys (conf/head/v8.yaml sets them)."""
        loss = settings.loss
        missing = [key for key in ("dfl", "topk", "alpha", "beta") if getattr(loss, key) is None]
        if missing:
            raise ValueError(
                f"train.loss: the v8 head's loss needs {', '.join(missing)} (conf/head/v8.yaml sets them)"
            )
        return cls(head, box_gain=loss.box, cls_gain=loss.cls, dfl_gain=loss.dfl, topk=loss.topk,
                   alpha=loss.alpha, beta=loss.beta)

    def __call__(self, preds: list[torch.Tensor], targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if targets.ndim != 2 or targets.shape[1] != 6:
            raise ValueError(
                f"AnchorFreeLoss: targets must be (N, 6) [batch_idx, cls, cx, cy, w, h], got shape {tuple(targets.shape)}"
            )
        preds = [p.float() for p in preds]
        box_logits, cls_logits = self.head.split(preds)
        pred_dist = box_logits.transpose(1, 2)  # (B, A, 4·reg_max)
        pred_scores = cls_logits.transpose(1, 2)  # (B, A, nc)
        batch_size, reg_max = pred_scores.shape[0], self.head.reg_max
        points, point_strides = self.head.cell_centres(preds)  # grid units
        finest_stride = float(self.head.stride[0])
        image_wh = (preds[0].shape[3] * finest_stride, preds[0].shape[2] * finest_stride)
        gt_labels, gt_boxes, gt_mask = padded_targets(targets.to(pred_scores.device), batch_size, image_wh)

        bins = torch.arange(reg_max, device=pred_dist.device, dtype=pred_dist.dtype)
        left_top, right_bottom = (pred_dist.view(batch_size, -1, 4, reg_max).softmax(3) @ bins).chunk(2, -1)
        pred_boxes = torch.cat((points - left_top, points + right_bottom), -1)  # xyxy, grid units
        assigned = self.assigner(
            pred_scores.detach().sigmoid(), pred_boxes.detach() * point_strides, points * point_strides,
            gt_labels, gt_boxes, gt_mask,
        )
        score_sum = assigned.scores.sum().clamp(min=1)
        loss_cls = F.binary_cross_entropy_with_logits(pred_scores, assigned.scores.to(pred_scores.dtype),
                                                      reduction="sum") / score_sum
        loss_box = loss_dfl = pred_scores.new_zeros(())
        foreground = assigned.foreground
        if foreground.any():
            target_boxes = assigned.boxes / point_strides
            weight = assigned.scores.sum(-1)[foreground].unsqueeze(-1)
            ciou = xyxy_ciou(pred_boxes[foreground], target_boxes[foreground]).unsqueeze(-1)
            loss_box = ((1.0 - ciou) * weight).sum() / score_sum
            target_dist = torch.cat((points - target_boxes[..., :2], target_boxes[..., 2:] - points), -1)
            target_dist = target_dist.clamp(0, reg_max - 1 - 0.01)  # the last bin's right neighbour stays in range
            dfl = distribution_focal_loss(pred_dist[foreground].reshape(-1, reg_max), target_dist[foreground])
            loss_dfl = (dfl * weight).sum() / score_sum
        items = torch.stack((loss_box, loss_cls, loss_dfl)) * pred_scores.new_tensor(self.gains)
        return items.sum() * batch_size, items.detach()
