"""Loading YOLOv5's official yolov5n weights and lightyolo checkpoints into a Detector."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf
from torch import nn

from lightyolo.models.backbones.c3 import C3Backbone
from lightyolo.models.detector import SCALES, Detector, build_detector
from lightyolo.models.head import Detect
from lightyolo.models.necks.pan import PANNeck
from lightyolo.models.operators.conv import ConvOperator
from lightyolo.models.weights import load_weights

REPO = Path(__file__).resolve().parents[1]
from conftest import SHARED

WEIGHTS = SHARED / "weights"
YOLOV5N = WEIGHTS / "yolov5n.state_dict.pt"
REFERENCE_IO = WEIGHTS / "yolov5n.reference-io.pt"

needs_yolov5n = pytest.mark.shared("weights/yolov5n.state_dict.pt", "weights/yolov5n.reference-io.pt")


def build_yolov5n() -> Detector:
    conf = REPO / "conf"
    return build_detector(
        OmegaConf.load(conf / "backbone" / "c3.yaml"),
        OmegaConf.load(conf / "neck" / "pan.yaml"),
        OmegaConf.load(conf / "operator" / "conv.yaml"),
        scale="n",
        nc=80,
    )


def relative_error(actual: torch.Tensor, expected: torch.Tensor) -> float:
    """max |actual − expected| / max |expected| over the tensor."""
    return ((actual - expected).abs().max() / expected.abs().max()).item()


@needs_yolov5n
def test_official_yolov5n_weights_reproduce_yolov5s_own_outputs() -> None:
    model = build_yolov5n()
    report = load_weights(model, YOLOV5N)
    assert (report.source_format, report.transferred, report.total) == ("yolov5", 349, 349)
    assert report.complete and report.not_loaded == []
    reference = torch.load(REFERENCE_IO, weights_only=True)
    model.eval()
    with torch.inference_mode():
        pred, raw = model(reference["input"])
    assert pred.shape == reference["pred"].shape == (1, 6300, 85)
    assert relative_error(pred, reference["pred"]) <= 1e-4
    for level, expected in zip(raw, reference["raw"]):
        assert relative_error(level, expected) <= 1e-4


@needs_yolov5n
def test_a_tensor_of_the_wrong_shape_is_refused_naming_its_key(tmp_path: Path) -> None:
    state = torch.load(YOLOV5N, weights_only=True)
    state["model.6.m.1.cv2.conv.weight"] = torch.zeros(64, 64, 5, 5)
    path = tmp_path / "bad.pt"
    torch.save(state, path)
    model = build_yolov5n()
    before = model.backbone.layers[0].conv.weight.clone()
    with pytest.raises(ValueError, match=r"model\.6\.m\.1\.cv2\.conv\.weight .*expected \(64, 64, 3, 3\), got \(64, 64, 5, 5\)"):
        load_weights(model, path)
    assert torch.equal(model.backbone.layers[0].conv.weight, before)  # nothing half-loaded


@needs_yolov5n
def test_a_wider_neck_gets_a_partial_transfer_with_counts() -> None:
    backbone = C3Backbone(*SCALES["n"], operator=ConvOperator())
    neck = PANNeck(backbone.out_channels, *SCALES["s"], operator=ConvOperator())
    model = Detector(backbone, neck, Detect(80, neck.out_channels))
    report = load_weights(model, YOLOV5N)
    state = torch.load(YOLOV5N, weights_only=True)
    backbone_tensors = len(backbone.state_dict())
    neck_step_counters = sum(1 for key in neck.state_dict() if key.endswith("num_batches_tracked"))
    # Backbone entirely; in the neck only the shape-() BN step counters fit; in the head the
    # anchors and the three (255,) biases fit, the weights (255, c_in) do not.
    assert report.transferred == backbone_tensors + neck_step_counters + 4
    assert report.total == len(model.state_dict())
    assert not report.complete
    assert torch.equal(backbone.layers[9].cv2.conv.weight, state["model.9.cv2.conv.weight"])
    assert torch.equal(model.head.m[2].bias, state["model.24.m.2.bias"])
    assert "head.m.0.weight" in report.not_loaded
    assert f"loaded {report.transferred}/{report.total}" in str(report)


def test_lightyolo_checkpoint_loads_back_into_the_same_model(tmp_path: Path) -> None:
    torch.manual_seed(0)
    trained = build_yolov5n()
    trained.train()
    trained(torch.rand(2, 3, 64, 64))  # running statistics away from their defaults
    path = tmp_path / "last.pt"
    torch.save({"ema": trained.state_dict(), "epoch": 3}, path)
    fresh = build_yolov5n()
    report = load_weights(fresh, path)
    assert (report.source_format, report.transferred, report.total) == ("lightyolo", 349, 349)
    x = torch.rand(1, 3, 64, 64)
    with torch.inference_mode():
        assert torch.equal(fresh.eval()(x)[0], trained.eval()(x)[0])


def test_a_pickled_module_is_refused_without_being_executed(tmp_path: Path) -> None:
    path = tmp_path / "module.pt"
    torch.save(nn.Conv2d(3, 3, 1), path)
    with pytest.raises(ValueError, match="not a weights-only state_dict"):
        load_weights(build_yolov5n(), path)


def test_a_missing_file_is_reported_by_path(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="nowhere.pt"):
        load_weights(build_yolov5n(), tmp_path / "nowhere.pt")
