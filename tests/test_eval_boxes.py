"""Box geometry: format round trips, IoU values, undoing a letterbox (YOLOv5's scale_boxes)."""

from __future__ import annotations

import pytest
import torch

from lightyolo.eval.boxes import box_iou, scale_boxes_to_original, xywh_to_xyxy, xyxy_to_xywh


def test_xywh_xyxy_conversions_are_inverse_and_exact():
    xywh = torch.tensor([[50.0, 40.0, 20.0, 10.0], [0.5, 0.5, 1.0, 0.25]])
    xyxy = xywh_to_xyxy(xywh)
    assert xyxy.tolist() == [[40.0, 35.0, 60.0, 45.0], [0.0, 0.375, 1.0, 0.625]]
    assert torch.equal(xyxy_to_xywh(xyxy), xywh)


def test_box_iou_of_known_pairs():
    a = torch.tensor([[0.0, 0.0, 10.0, 10.0], [0.0, 0.0, 2.0, 2.0]])
    b = torch.tensor([[0.0, 0.0, 10.0, 10.0], [5.0, 0.0, 15.0, 10.0], [20.0, 20.0, 30.0, 30.0]])
    iou = box_iou(a, b)
    assert iou.shape == (2, 3)
    expected = torch.tensor([[1.0, 50 / 150, 0.0], [4 / 100, 0.0, 0.0]])
    assert torch.allclose(iou, expected)


def test_scale_boxes_to_original_undoes_letterbox_with_padding():
    # a 480x640 (h, w) image letterboxed into 320x320: ratio 0.5, 40 px of padding top and bottom
    ratio_pad = ((0.5, 0.5), (0.0, 40.0))
    original = torch.tensor([[100.0, 50.0, 300.0, 250.0], [0.0, 0.0, 640.0, 480.0]])
    letterboxed = original.clone()
    letterboxed[:, [0, 2]] = original[:, [0, 2]] * 0.5 + 0.0
    letterboxed[:, [1, 3]] = original[:, [1, 3]] * 0.5 + 40.0
    restored = scale_boxes_to_original(letterboxed, ratio_pad, (480, 640))
    assert torch.allclose(restored, original)
    assert letterboxed[0].tolist() == [50.0, 65.0, 150.0, 165.0], "the input must not be modified"


def test_scale_boxes_to_original_uses_separate_x_and_y_ratios_and_clips():
    ratio_pad = ((0.25, 0.5), (8.0, 4.0))  # (ry, rx), (pad_x, pad_y)
    boxes = torch.tensor([[18.0, 14.0, 58.0, 29.0], [-20.0, -10.0, 500.0, 400.0]])
    restored = scale_boxes_to_original(boxes, ratio_pad, (100, 200))
    assert restored.tolist() == [[20.0, 40.0, 100.0, 100.0], [0.0, 0.0, 200.0, 100.0]]


@pytest.mark.parametrize("orig_shape", [(427, 640), (640, 359)])
def test_letterbox_round_trip_of_random_boxes(orig_shape):
    generator = torch.Generator().manual_seed(0)
    h0, w0 = orig_shape
    ratio = 320 / max(h0, w0)
    pad_x, pad_y = (320 - w0 * ratio) / 2, (320 - h0 * ratio) / 2
    xy = torch.rand(50, 2, generator=generator) * torch.tensor([w0 / 2, h0 / 2])
    wh = torch.rand(50, 2, generator=generator) * torch.tensor([w0 / 2, h0 / 2])
    original = torch.cat((xy, xy + wh), dim=1)
    letterboxed = original * ratio + torch.tensor([pad_x, pad_y, pad_x, pad_y])
    restored = scale_boxes_to_original(letterboxed, ((ratio, ratio), (pad_x, pad_y)), orig_shape)
    assert torch.allclose(restored, original, atol=1e-3)
