"""Box geometry for evaluation: format conversion, pairwise IoU and undoing the letterbox.

Semantics follow YOLOv5's `utils/general.py` (`xywh2xyxy`, `xyxy2xywh`, `scale_boxes`,
`clip_boxes`) and torchvision's `box_iou` (areas without YOLOv5's old "+1"), so that boxes
mapped back to the original image match what YOLOv5's val.py writes to its COCO json.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

# ((ry, rx), (pad_x, pad_y)): x_input = x_orig * rx + pad_x, y_input = y_orig * ry + pad_y.
RatioPad = tuple[tuple[float, float], tuple[float, float]]


def xywh_to_xyxy(boxes: torch.Tensor) -> torch.Tensor:
    """(..., 4) centre x, centre y, width, height → x1, y1, x2, y2."""
    centre, size = boxes[..., :2], boxes[..., 2:4]
    return torch.cat((centre - size / 2, centre + size / 2), dim=-1)


def xyxy_to_xywh(boxes: torch.Tensor) -> torch.Tensor:
    """(..., 4) x1, y1, x2, y2 → centre x, centre y, width, height."""
    top_left, bottom_right = boxes[..., :2], boxes[..., 2:4]
    return torch.cat(((top_left + bottom_right) / 2, bottom_right - top_left), dim=-1)


def box_area(boxes_xyxy: torch.Tensor) -> torch.Tensor:
    """(..., 4) xyxy → (...) area."""
    return (boxes_xyxy[..., 2] - boxes_xyxy[..., 0]) * (boxes_xyxy[..., 3] - boxes_xyxy[..., 1])


def box_iou(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Pairwise IoU of (N, 4) and (M, 4) xyxy boxes → (N, M)."""
    top_left = torch.maximum(a[:, None, :2], b[None, :, :2])
    bottom_right = torch.minimum(a[:, None, 2:], b[None, :, 2:])
    intersection = (bottom_right - top_left).clamp(min=0).prod(dim=2)
    union = box_area(a)[:, None] + box_area(b)[None, :] - intersection
    return intersection / union


def scale_boxes_to_original(
    boxes_xyxy: torch.Tensor,
    ratio_pad: RatioPad | Sequence[Sequence[float]],
    orig_shape: tuple[int, int] | Sequence[int],
) -> torch.Tensor:
    """Map (N, 4) xyxy boxes from the letterboxed network input back to the original image.

    Subtracts the padding, divides by the resize ratio and clips to `orig_shape` (h0, w0), like
    YOLOv5's `scale_boxes`; x and y use their own ratio so non-uniform resizes map back too.
    Returns a new tensor; the input is left untouched.
    """
    (ratio_y, ratio_x), (pad_x, pad_y) = ratio_pad
    height, width = orig_shape
    boxes = boxes_xyxy.clone()
    boxes[:, [0, 2]] = ((boxes[:, [0, 2]] - pad_x) / ratio_x).clamp(0, width)
    boxes[:, [1, 3]] = ((boxes[:, [1, 3]] - pad_y) / ratio_y).clamp(0, height)
    return boxes
