"""Non-maximum suppression for YOLOv5's decoded output, in pure torch (no torchvision).

Reproduces `non_max_suppression` of YOLOv5 (ultralytics/yolov5 v7.0, `utils/general.py`) as
its val.py calls it: score = objectness × class probability, candidates with objectness above
`conf_thres`, one row per (box, class) pair above `conf_thres` when `multi_label`, classes kept
apart by offsetting boxes by `cls × max_wh`, the `max_nms` best rows enter greedy NMS, at most
`max_det` survive. `greedy_nms` returns the same indices as `torchvision.ops.nms` (suppress
when IoU > threshold) for distinct scores. An anchor-free head's output has no objectness
column (`objectness=False`, as YOLOv8's NMS reads it): a row is a candidate when its best class
score is above `conf_thres`, and a pair's confidence is the class score itself.
"""

from __future__ import annotations

import torch

from lightyolo.eval.boxes import box_area, xywh_to_xyxy


def greedy_nms(
    boxes_xyxy: torch.Tensor,
    scores: torch.Tensor,
    iou_thres: float,
    max_keep: int | None = None,
    block_size: int = 128,
) -> torch.Tensor:
    """Indices of the boxes greedy NMS keeps, best score first.

    Greedy NMS keeps a box unless a better-scored *kept* box overlaps it with IoU >
    `iou_thres`. Boxes are taken in score order, `block_size` at a time: a block first loses
    what the boxes kept so far suppress, then its own greedy outcome is the fixed point of
    "kept = alive and not suppressed by an earlier kept box of the block", reached by
    iterating a matrix-vector product (Cluster-NMS, arXiv 2005.03572: exact greedy result).
    Stops once `max_keep` boxes are kept, so a large candidate set costs few blocks.
    """
    order = torch.sort(scores, descending=True, stable=True).indices
    sorted_boxes = boxes_xyxy[order]
    areas = box_area(sorted_boxes)  # once, not per block pair
    limit = len(order) if max_keep is None else max_keep
    kept_positions: list[torch.Tensor] = []
    kept_boxes, kept_areas = sorted_boxes[:0], areas[:0]
    for start in range(0, len(order), block_size):
        if len(kept_boxes) >= limit:
            break
        block, block_areas = sorted_boxes[start : start + block_size], areas[start : start + block_size]
        # `> iou_thres` (not `<=`) so NaN IoUs of degenerate boxes suppress nothing, as in torchvision
        alive = ~(_iou(block, block_areas, kept_boxes, kept_areas) > iou_thres).any(dim=1)
        overlaps = (_iou(block, block_areas, block, block_areas) > iou_thres).triu_(diagonal=1)
        keep = alive
        if overlaps.any():  # else nothing in the block suppresses anything in it: keep = alive
            earlier_suppresses_later = overlaps.to(block.dtype)
            while True:
                suppressed = (keep.to(block.dtype) @ earlier_suppresses_later) > 0
                next_keep = alive & ~suppressed
                if torch.equal(next_keep, keep):
                    break
                keep = next_keep
        positions = keep.nonzero(as_tuple=True)[0]
        kept_positions.append(start + positions)
        kept_boxes = torch.cat((kept_boxes, block[positions]))
        kept_areas = torch.cat((kept_areas, block_areas[positions]))
    if not kept_positions:
        return order[:0]
    return order[torch.cat(kept_positions)[:limit]]


def _iou(a: torch.Tensor, area_a: torch.Tensor, b: torch.Tensor, area_b: torch.Tensor) -> torch.Tensor:
    """`box_iou` of (N, 4) and (M, 4) xyxy boxes with their areas already known."""
    top_left = torch.maximum(a[:, None, :2], b[None, :, :2])
    bottom_right = torch.minimum(a[:, None, 2:], b[None, :, 2:])
    intersection = (bottom_right - top_left).clamp_(min=0).prod(dim=2)
    return intersection / (area_a[:, None] + area_b[None, :] - intersection)


def has_objectness(pred: torch.Tensor, num_classes: int, declared: bool | None = None) -> bool:
    """Whether decoded rows (B, N, C) carry an objectness column: C = 5 + nc (YOLOv5's Detect)
    → True, C = 4 + nc (the anchor-free head) → False; anything else is a ValueError. A head's
    own declaration (`head.objectness`) decides when given, since 5 + nc = 4 + (nc + 1)."""
    if declared is not None and pred.shape[-1] == (5 if declared else 4) + num_classes:
        return declared
    if declared is None and pred.shape[-1] == 5 + num_classes:
        return True
    if declared is None and pred.shape[-1] == 4 + num_classes:
        return False
    raise ValueError(
        f"evaluate: model predicts {pred.shape[-1] - 5} classes, category_ids has {num_classes} "
        f"(rows of {pred.shape[-1]} values: expected 5 + nc with objectness or 4 + nc without)"
    )


def non_max_suppression(
    pred: torch.Tensor,
    conf_thres: float = 0.001,
    iou_thres: float = 0.6,
    max_det: int = 300,
    multi_label: bool = True,
    max_wh: int = 7680,
    max_nms: int = 30000,
    objectness: bool = True,
) -> list[torch.Tensor]:
    """Per image, the detections (n, 6) `[x1, y1, x2, y2, conf, cls]` of a (B, N, 5 + nc) batch
    (or (B, N, 4 + nc) with `objectness=False`).

    `pred` rows are cx, cy, w, h (input pixels), sigmoided objectness (unless
    `objectness=False`), sigmoided class probabilities. Boxes stay in network-input pixels;
    rows are sorted by confidence, best first.
    """
    first_class = 5 if objectness else 4
    if pred.dim() != 3 or pred.shape[2] < first_class + 1:
        layout = "5 + nc" if objectness else "4 + nc"
        raise ValueError(f"non_max_suppression: expected pred of shape (B, N, {layout}), got {tuple(pred.shape)}")
    if not 0 <= conf_thres <= 1 or not 0 <= iou_thres <= 1:
        raise ValueError(f"non_max_suppression: conf_thres and iou_thres must be in 0..1, got {conf_thres}, {iou_thres}")
    num_classes = pred.shape[2] - first_class
    multi_label &= num_classes > 1  # one class: the single-label path is the same and cheaper
    output = []
    for image_pred in pred:
        if objectness:
            candidates = image_pred[image_pred[:, 4] > conf_thres]
            scores = candidates[:, 5:] * candidates[:, 4:5]
        else:
            candidates = image_pred[image_pred[:, 4:].amax(1) > conf_thres]
            scores = candidates[:, 4:]
        boxes = xywh_to_xyxy(candidates[:, :4])
        if multi_label:
            box_index, class_index = (scores > conf_thres).nonzero(as_tuple=True)
            conf = scores[box_index, class_index]
        else:
            conf, class_index = scores.max(dim=1)
            box_index = (conf > conf_thres).nonzero(as_tuple=True)[0]
            conf, class_index = conf[box_index], class_index[box_index]
        if len(conf) > max_nms:  # topk, not a full sort: an untrained model yields millions of pairs
            best = conf.topk(max_nms).indices
            box_index, class_index, conf = box_index[best], class_index[best], conf[best]
        detections = torch.cat((boxes[box_index], conf[:, None], class_index[:, None].to(pred.dtype)), dim=1)
        class_offset = detections[:, 5:6] * max_wh  # boxes of different classes never overlap
        keep = greedy_nms(detections[:, :4] + class_offset, detections[:, 4], iou_thres, max_keep=max_det)
        output.append(detections[keep])
    return output
