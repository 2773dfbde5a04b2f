"""The YOLOv5 baseline (c3 backbone, PAN neck, Detect) built from the conf yamls: sizes, shapes, decode."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from lightyolo.measure.params import part_parameter_counts
from lightyolo.models.backbones.c3 import C3Backbone
from lightyolo.models.detector import SCALES, Detector, build_detector
from lightyolo.models.head import Detect
from lightyolo.models.necks.pan import PANNeck
from lightyolo.models.operators.conv import ConvOperator

CONF = Path(__file__).resolve().parents[1] / "conf"


def build_baseline(scale: str, nc: int = 80) -> Detector:
    return build_detector(
        OmegaConf.load(CONF / "backbone" / "c3.yaml"),
        OmegaConf.load(CONF / "neck" / "pan.yaml"),
        OmegaConf.load(CONF / "operator" / "conv.yaml"),
        scale=scale,
        nc=nc,
    )


@pytest.fixture(scope="module")
def yolov5n_eval() -> Detector:
    return build_baseline("n").eval()


@pytest.mark.parametrize(
    ("scale", "backbone", "neck", "head", "total"),
    [
        ("n", 1_046_368, 710_784, 115_005, 1_872_157),
        ("s", 4_171_456, 2_834_688, 229_245, 7_235_389),
    ],
)
def test_parameter_counts_match_yolov5_v7(scale: str, backbone: int, neck: int, head: int, total: int) -> None:
    counts = part_parameter_counts(build_baseline(scale))
    assert counts == {"backbone": backbone, "neck": neck, "head": head, "total": total}


def test_scale_n_declares_yolov5n_channels_and_strides(yolov5n_eval: Detector) -> None:
    model = yolov5n_eval
    assert model.backbone.out_channels == (64, 128, 256)
    assert model.neck.out_channels == (64, 128, 256)
    assert model.stride.tolist() == [8.0, 16.0, 32.0]
    assert model.nc == 80
    assert [conv.out_channels for conv in model.head.m] == [255, 255, 255]


@pytest.mark.parametrize(("height", "width"), [(320, 320), (640, 640), (256, 384)])
def test_eval_forward_decodes_every_cell_of_every_level(yolov5n_eval: Detector, height: int, width: int) -> None:
    with torch.inference_mode():
        pred, raw = yolov5n_eval(torch.rand(1, 3, height, width))
    cells = sum(3 * (height // s) * (width // s) for s in (8, 16, 32))
    assert pred.shape == (1, cells, 85)
    assert [tuple(r.shape) for r in raw] == [(1, 3, height // s, width // s, 85) for s in (8, 16, 32)]
    assert 0 <= pred[..., 4:].min() and pred[..., 4:].max() <= 1


def test_backbone_taps_are_at_strides_8_16_32_for_a_non_square_input() -> None:
    backbone = C3Backbone(*SCALES["s"], operator=ConvOperator())
    with torch.inference_mode():
        maps = backbone(torch.rand(1, 3, 256, 384))
    assert [tuple(m.shape) for m in maps] == [(1, 128, 32, 48), (1, 256, 16, 24), (1, 512, 8, 12)]


def test_pan_neck_accepts_any_backbone_channels() -> None:
    neck = PANNeck((116, 232, 464), *SCALES["n"], operator=ConvOperator())
    maps = [torch.rand(2, c, 32 // f, 48 // f) for c, f in ((116, 1), (232, 2), (464, 4))]
    with torch.inference_mode():
        out = neck(maps)
    assert neck.out_channels == (64, 128, 256)
    assert [tuple(o.shape) for o in out] == [(2, 64, 32, 48), (2, 128, 16, 24), (2, 256, 8, 12)]


def test_detect_stores_anchors_in_grid_units_like_yolov5() -> None:
    head = Detect(80, (64, 128, 256))
    assert head.anchors.shape == (3, 3, 2)
    assert head.anchors[0].tolist() == [[1.25, 1.625], [2.0, 3.75], [4.125, 2.875]]
    assert head.anchors[2, 2].tolist() == pytest.approx([373 / 32, 326 / 32])
    assert (head.nl, head.na, head.no) == (3, 3, 85)


def test_detect_biases_start_at_yolov5_priors() -> None:
    nc = 3
    head = Detect(nc, (64, 128, 256))
    for conv, stride in zip(head.m, (8, 16, 32)):
        bias = conv.bias.detach().view(3, nc + 5)
        init_bound = 1 / math.sqrt(conv.in_channels)  # PyTorch's default bias init range
        assert (bias[:, 4] - math.log(8 / (640 / stride) ** 2)).abs().max() <= init_bound
        assert (bias[:, 5:] - math.log(0.6 / (nc - 0.99))).abs().max() <= init_bound


def test_detect_decodes_cell_centres_and_anchor_sizes_in_level_anchor_y_x_order() -> None:
    nc = 2
    head = Detect(nc, (4, 4, 4)).eval()
    for conv in head.m:  # zero logits: σ = 0.5, so xy = (cell + 0.5)·stride and wh = anchor
        torch.nn.init.zeros_(conv.weight)
        torch.nn.init.zeros_(conv.bias)
    maps = [torch.rand(1, 4, 8 // f, 12 // f) for f in (1, 2, 4)]
    with torch.inference_mode():
        pred, _ = head(maps)
    assert pred.shape == (1, 3 * (96 + 24 + 6), 7)
    anchor, y, x = 2, 3, 5  # on level 1 (P4: 4×6 cells), after the 3·96 rows of P3
    row = 3 * 96 + anchor * 24 + y * 6 + x
    assert pred[0, row].tolist() == pytest.approx([(x + 0.5) * 16, (y + 0.5) * 16, 59, 119, 0.5, 0.5, 0.5])


def test_unknown_scale_is_refused_naming_the_valid_ones() -> None:
    with pytest.raises(ValueError, match=r"scale: unknown scale 'xl'.*\['m', 'n', 's'\]"):
        build_baseline("xl")


@pytest.mark.parametrize("scale", ["n", "s"])
def test_training_forward_and_backward_run_at_128(scale: str) -> None:
    model = build_baseline(scale, nc=3).train()
    raw = model(torch.rand(2, 3, 128, 128))
    assert [tuple(r.shape) for r in raw] == [(2, 3, 128 // s, 128 // s, 8) for s in (8, 16, 32)]
    sum(r.square().mean() for r in raw).backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())
    assert model.backbone.layers[0].conv.weight.grad.abs().sum() > 0
