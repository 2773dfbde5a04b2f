"""Parity with YOLOv5's own evaluation: the official yolov5n weights on coco128 at 640
(rect batches of 16 as the pipeline's eval.batch_size, pad 0.5, conf 0.001, IoU 0.6, 300
detections, float32) must give the pycocotools figures of ../shared/weights/README.md and
../shared/data/coco128/README.md.

Measured here with batches of 16: mAP50-95 0.367 / mAP50 0.570 (labels GT; reference 0.367 /
0.571). With batches of 32 (val.py's default) the same weights give 0.366 / 0.563: the rect
batches decide each image's padding, and that alone moves mAP50 by ~0.007 on 128 images.
Resizing cannot explain it: at 640, 110 of the 128 images are used at their own size and the
other 18 are upscaled bilinearly, as OpenCV's INTER_LINEAR does in YOLOv5.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from lightyolo.data.dataset import DetectionDataset
from lightyolo.data.loader import build_dataloader
from lightyolo.data.specs import read_class_names
from lightyolo.data.yolo_format import read_yolo_split
from lightyolo.eval.coco import coco_evaluate, coco_ground_truth
from lightyolo.eval.evaluate import EvalResult, evaluate
from lightyolo.models.detector import build_detector
from lightyolo.models.weights import load_weights

REPO = Path(__file__).resolve().parents[1]
from conftest import COCO128, SHARED
OFFICIAL_JSON = COCO128 / "annotations" / "instances_train2017.json"

pytestmark = [pytest.mark.slow, pytest.mark.shared("data/coco128", "weights/yolov5n.state_dict.pt")]


@pytest.fixture(scope="module")
def yolov5n_on_coco128() -> EvalResult:
    """yolov5n evaluated against GT built from the YOLO labels, with COCO's category ids."""
    conf = REPO / "conf"
    model = build_detector(OmegaConf.load(conf / "backbone" / "c3.yaml"), OmegaConf.load(conf / "neck" / "pan.yaml"),
                           OmegaConf.load(conf / "operator" / "conv.yaml"), scale="n", nc=80)
    assert load_weights(model, SHARED / "weights" / "yolov5n.state_dict.pt").complete
    names = read_class_names(COCO128 / "data.yaml")
    records, _ = read_yolo_split(COCO128 / "images" / "train2017", COCO128 / "labels" / "train2017", len(names))
    category_ids = sorted(c["id"] for c in json.loads(OFFICIAL_JSON.read_text())["categories"])
    dataset = DetectionDataset(records, 640, augment=False, rect=True, batch_size=16, pad=0.5)
    loader = build_dataloader(dataset, batch_size=16, workers=0, shuffle=False, seed=0)
    return evaluate(model, loader, coco_gt=coco_ground_truth(records, category_ids, names),
                   category_ids=category_ids, conf_thres=0.001, iou_thres=0.6, max_det=300, device="cpu")


def test_yolov5n_reproduces_yolov5_map_against_label_ground_truth(yolov5n_on_coco128):
    result = yolov5n_on_coco128
    assert result.images == 128
    assert result.metrics["map50_95"] == pytest.approx(0.367, abs=0.005)
    assert result.metrics["map50"] == pytest.approx(0.571, abs=0.005)


def test_yolov5n_reproduces_yolov5_map_against_the_official_json(yolov5n_on_coco128):
    result = yolov5n_on_coco128
    stats = coco_evaluate(json.loads(OFFICIAL_JSON.read_text()), result.predictions)
    assert stats.map50_95 == pytest.approx(0.370, abs=0.005)
    assert stats.map50 == pytest.approx(0.576, abs=0.012)
