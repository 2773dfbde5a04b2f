"""YOLOv5 loss: CIoU values, target-anchor matching, loss components and a training signal."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf
from torch import nn

from lightyolo.train.loss import YoloLoss, bbox_ciou

REPO = Path(__file__).resolve().parents[1]

# YOLOv5's COCO anchors in pixels, per level P3/8, P4/16, P5/32.
COCO_ANCHORS_PX = (
    ((10, 13), (16, 30), (33, 23)),
    ((30, 61), (62, 45), (59, 119)),
    ((116, 90), (156, 198), (373, 326)),
)


class AnchorTable(nn.Module):
    """The attributes YoloLoss reads from a Detect head, with YOLOv5's default anchors."""

    def __init__(self, nc: int) -> None:
        super().__init__()
        self.nc, self.no, self.nl, self.na = nc, nc + 5, 3, 3
        self.register_buffer("stride", torch.tensor([8.0, 16.0, 32.0]))
        anchors_px = torch.tensor(COCO_ANCHORS_PX, dtype=torch.float32)
        self.register_buffer("anchors", anchors_px / self.stride.view(-1, 1, 1))


def zero_predictions(head: AnchorTable, img_size: int, batch: int = 1) -> list[torch.Tensor]:
    return [
        torch.zeros(batch, head.na, img_size // s, img_size // s, head.no)
        for s in (8, 16, 32)
    ]


def box_px(cx: float, cy: float, w: float, h: float, img_size: int, cls: int = 0) -> list[float]:
    return [0.0, float(cls), cx / img_size, cy / img_size, w / img_size, h / img_size]


# --- CIoU ------------------------------------------------------------------------------


def test_ciou_of_identical_boxes_is_one():
    boxes = torch.tensor([[5.0, 5.0, 2.0, 3.0], [0.3, 0.7, 0.1, 0.4]])
    assert torch.allclose(bbox_ciou(boxes, boxes.clone()), torch.ones(2), atol=1e-6)


def test_ciou_of_disjoint_boxes_is_minus_centre_distance_over_diagonal():
    # Unit squares 3 apart: IoU 0, rho² = 9, enclosing box 4 × 1 → c² = 17, same aspect.
    ciou = bbox_ciou(torch.tensor([[0.0, 0.0, 1.0, 1.0]]), torch.tensor([[3.0, 0.0, 1.0, 1.0]]))
    assert ciou.item() == pytest.approx(-9 / 17, abs=1e-6)


def test_ciou_of_half_overlapping_squares_is_iou_minus_distance_term():
    # 2×2 squares shifted by 1: IoU 2/6, rho² = 1, enclosing 3 × 2 → c² = 13.
    ciou = bbox_ciou(torch.tensor([[1.0, 1.0, 2.0, 2.0]]), torch.tensor([[2.0, 1.0, 2.0, 2.0]]))
    assert ciou.item() == pytest.approx(1 / 3 - 1 / 13, abs=1e-6)


def test_ciou_penalises_aspect_mismatch_of_concentric_boxes():
    # 2×2 inside 4×2: IoU 0.5, no centre distance; v = 4/π² (atan 2 − atan 1)².
    v = 4 / math.pi**2 * (math.atan(2.0) - math.atan(1.0)) ** 2
    expected = 0.5 - v * v / (v - 0.5 + 1)
    ciou = bbox_ciou(torch.tensor([[0.0, 0.0, 2.0, 2.0]]), torch.tensor([[0.0, 0.0, 4.0, 2.0]]))
    assert ciou.item() == pytest.approx(expected, abs=1e-6)
    assert expected == pytest.approx(0.496752, abs=1e-6)


# --- matching --------------------------------------------------------------------------


def test_target_far_from_every_anchor_shape_gets_no_positives():
    head = AnchorTable(nc=3)
    loss = YoloLoss(head, img_size=256)
    preds = zero_predictions(head, 256)
    # 2×2 px: the smallest anchor side (10 px) is 5× larger, beyond anchor_t = 4.
    tiny = torch.tensor([box_px(100, 100, 2, 2, 256)])
    assert [len(level.image) for level in loss.build_targets(preds, tiny)] == [0, 0, 0]
    # A looser threshold admits the one anchor within 7× of it: P3's 10×13 (16×30 is 15×).
    loose = YoloLoss(head, img_size=256, anchor_t=7.0)
    assert [len(level.image) for level in loose.build_targets(preds, tiny)] == [1, 0, 0]


def test_target_matches_anchors_within_ratio_and_three_cells_each():
    head = AnchorTable(nc=3)
    loss = YoloLoss(head, img_size=256)
    preds = zero_predictions(head, 256)
    # 32×32 px fits all P3 and P4 anchors and only 116×90 on P5; its centre sits a quarter
    # cell from the top-left corner on every level, so it also goes to the left and top cells.
    target = torch.tensor([box_px(98, 98, 32, 32, 256)])
    levels = loss.build_targets(preds, target)
    assert [len(level.image) for level in levels] == [9, 9, 3]
    p3 = levels[0]
    cells = {(int(x), int(y)) for x, y in zip(p3.grid_x, p3.grid_y)}
    assert cells == {(12, 12), (11, 12), (12, 11)}
    assert sorted(p3.anchor.tolist()) == [0, 0, 0, 1, 1, 1, 2, 2, 2]
    assert levels[2].anchor.tolist() == [0, 0, 0]
    # Box centres relative to the assigned cell stay inside the head's (−0.5, 1.5) range.
    for level in levels:
        assert level.box[:, :2].min() >= -0.5 and level.box[:, :2].max() <= 1.5
    assert torch.allclose(p3.box[:, 2:], torch.full((9, 2), 4.0))  # 32 px / stride 8


def test_target_near_bottom_right_of_cell_goes_to_right_and_bottom_neighbours():
    head = AnchorTable(nc=3)
    loss = YoloLoss(head, img_size=256)
    levels = loss.build_targets(
        zero_predictions(head, 256), torch.tensor([box_px(102, 102, 32, 32, 256)])
    )
    p3 = levels[0]
    assert {(int(x), int(y)) for x, y in zip(p3.grid_x, p3.grid_y)} == {
        (12, 12),
        (13, 12),
        (12, 13),
    }


# --- loss values ----------------------------------------------------------------------


def random_targets(generator: torch.Generator, batch: int, per_image: int, nc: int):
    n = batch * per_image
    image = torch.arange(batch).repeat_interleave(per_image).float()
    cls = torch.randint(0, nc, (n,), generator=generator).float()
    centre = torch.rand(n, 2, generator=generator) * 0.8 + 0.1
    size = torch.rand(n, 2, generator=generator) * 0.3 + 0.05
    return torch.cat((image[:, None], cls[:, None], centre, size), 1)


def test_loss_is_finite_and_positive_on_random_targets():
    generator = torch.Generator().manual_seed(0)
    head = AnchorTable(nc=4)
    loss = YoloLoss(head, img_size=128)
    preds = [
        torch.randn(p.shape, generator=generator, requires_grad=True)
        for p in zero_predictions(head, 128, batch=2)
    ]
    total, parts = loss(preds, random_targets(generator, 2, 3, 4))
    assert total.ndim == 0 and torch.isfinite(total) and total.item() > 0
    assert parts.shape == (3,) and not parts.requires_grad
    assert (parts > 0).all()
    assert total.item() == pytest.approx(parts.sum().item() * 2, rel=1e-5)  # × batch size
    total.backward()
    assert all(torch.isfinite(p.grad).all() for p in preds)


def test_no_targets_gives_objectness_only_loss():
    head = AnchorTable(nc=4)
    loss = YoloLoss(head, img_size=128)
    preds = [p.requires_grad_() for p in zero_predictions(head, 128, batch=2)]
    total, parts = loss(preds, torch.zeros(0, 6))
    box, obj, cls = parts.tolist()
    assert box == 0.0 and cls == 0.0
    # All-zero logits against all-zero objectness: BCE = ln 2 per level, weights 4 + 1 + 0.4,
    # obj gain 1.0 · (128/640)².
    assert obj == pytest.approx(math.log(2) * 5.4 * (128 / 640) ** 2, rel=1e-5)
    assert total.item() == pytest.approx(2 * obj, rel=1e-5)
    total.backward()


def test_gains_scale_with_image_size_and_class_count():
    head = AnchorTable(nc=40)
    preds = zero_predictions(head, 128)
    target = torch.tensor([box_px(60, 60, 40, 30, 128, cls=3)])
    _, at_640 = YoloLoss(head, img_size=640)(preds, target)
    _, at_320 = YoloLoss(head, img_size=320)(preds, target)
    _, unit = YoloLoss(head, img_size=640, box_gain=1.0, cls_gain=1.0)(preds, target)
    assert at_320[1].item() == pytest.approx(at_640[1].item() / 4, rel=1e-5)
    assert at_640[0].item() == pytest.approx(unit[0].item() * 0.05, rel=1e-5)
    assert at_640[2].item() == pytest.approx(unit[2].item() * 0.5, rel=1e-5)
    # Zero logits → BCE ln 2 per class; cls gain 1.0 · 40/80, summed over the 3 levels.
    assert unit[2].item() == pytest.approx(3 * math.log(2) * 0.5, rel=1e-5)


def test_single_class_has_no_class_loss():
    head = AnchorTable(nc=1)
    preds = zero_predictions(head, 128)
    _, parts = YoloLoss(head, img_size=128)(preds, torch.tensor([box_px(60, 60, 40, 30, 128)]))
    assert parts[2].item() == 0.0 and parts[0].item() > 0


def test_malformed_targets_raise_clear_error():
    head = AnchorTable(nc=2)
    with pytest.raises(ValueError, match=r"targets must be \(N, 6\)"):
        YoloLoss(head, img_size=128)(zero_predictions(head, 128), torch.zeros(3, 5))


# --- training signal on the real detector ---------------------------------------------


@pytest.fixture
def one_thread():
    """Two OpenMP threads on 2 shared, busy cores stall for seconds per step; one does not."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def test_loss_decreases_when_training_the_n_model_on_a_tiny_batch(one_thread):
    from lightyolo.models.detector import build_detector
    from lightyolo.train.optim import BIAS_GROUP, build_optimizer

    torch.manual_seed(0)
    model = build_detector(
        OmegaConf.load(REPO / "conf/backbone/c3.yaml"),
        OmegaConf.load(REPO / "conf/neck/pan.yaml"),
        OmegaConf.load(REPO / "conf/operator/conv.yaml"),
        scale="n",
        nc=3,
    ).train()
    # At batch 2 the YOLOv5 loss moves slowly (0.78× after 20 steps, 0.62× averaged over
    # the last 5 of 40), so 40 steps give the signal a clear margin.
    loss = YoloLoss(model.head, img_size=128)
    images = torch.rand(2, 3, 128, 128)
    targets = torch.tensor(
        [
            [0, 0, 0.30, 0.40, 0.25, 0.30],
            [0, 1, 0.70, 0.60, 0.40, 0.20],
            [1, 2, 0.50, 0.50, 0.50, 0.60],
            [1, 0, 0.20, 0.75, 0.15, 0.15],
        ]
    )
    optimizer = build_optimizer(model, lr0=0.01)
    optimizer.param_groups[BIAS_GROUP]["lr"] = 0.1  # YOLOv5's warmup_bias_lr
    history = []
    for _ in range(40):
        total, _ = loss(model(images), targets)
        optimizer.zero_grad()
        total.backward()
        optimizer.step()
        history.append(total.item())
    assert all(math.isfinite(value) for value in history)
    assert sum(history[-5:]) / 5 < 0.7 * history[0]
