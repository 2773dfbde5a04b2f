"""The eval loop end to end: a detector whose output is the ground truth in letterboxed
coordinates must score mAP 1.0 once boxes are mapped back through each image's ratio_pad."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from lightyolo.data.records import DatasetSpec, ImageRecord
from lightyolo.data.specs import read_class_names
from lightyolo.data.yolo_format import read_yolo_split
from lightyolo.eval.coco import coco_ground_truth
from lightyolo.eval.evaluate import STAGES, evaluate, ground_truth_for

from conftest import COCO128
INPUT_SIZE = 320
NC = 80


class FixedPredictions(nn.Module):
    """A detector stand-in: returns pre-built decoded `pred` tensors, one per batch, and records
    the mode and input it saw."""

    def __init__(self, preds: list[torch.Tensor]) -> None:
        super().__init__()
        self.preds = list(preds)
        self.seen: list[tuple[bool, bool, torch.dtype, float]] = []

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, None]:
        self.seen.append((self.training, torch.is_inference_mode_enabled(), images.dtype, float(images.max())))
        return self.preds.pop(0), None


def coco128_records(count: int) -> tuple[list[ImageRecord], list[str]]:
    names = read_class_names(COCO128 / "data.yaml")
    records, _ = read_yolo_split(COCO128 / "images" / "train2017", COCO128 / "labels" / "train2017", len(names))
    return [r for r in records if len(r.classes)][:count], names


def letterbox_meta(record: ImageRecord) -> dict:
    """YOLOv5-style square letterbox: one ratio, the padding split evenly (fractional)."""
    ratio = INPUT_SIZE / max(record.width, record.height)
    pad_x, pad_y = (INPUT_SIZE - record.width * ratio) / 2, (INPUT_SIZE - record.height * ratio) / 2
    return {"image_id": record.image_id, "path": str(record.path), "orig_shape": (record.height, record.width),
            "ratio_pad": ((ratio, ratio), (pad_x, pad_y))}


def ground_truth_as_pred(record: ImageRecord, meta: dict, rows: int) -> torch.Tensor:
    """(rows, 5 + NC): the record's boxes in input pixels with objectness 0.9 and a one-hot class,
    padded with background rows whose objectness is below any sensible conf_thres."""
    (ratio_y, ratio_x), (pad_x, pad_y) = meta["ratio_pad"]
    boxes = torch.from_numpy(record.boxes).double()
    xywh = torch.stack((boxes[:, 0] * record.width * ratio_x + pad_x, boxes[:, 1] * record.height * ratio_y + pad_y,
                        boxes[:, 2] * record.width * ratio_x, boxes[:, 3] * record.height * ratio_y), dim=1)
    classes = nn.functional.one_hot(torch.from_numpy(record.classes), NC).double()
    objects = torch.cat((xywh, torch.full((len(xywh), 1), 0.9, dtype=torch.double), classes), dim=1)
    background = torch.zeros(rows - len(objects), 5 + NC, dtype=torch.double)
    background[:, :4] = torch.tensor([160.0, 160.0, 50.0, 50.0])
    background[:, 4] = 0.0005
    background[:, 5] = 1.0
    return torch.cat((objects, background)).float()


def loader_and_model(records: list[ImageRecord], batch_size: int) -> tuple[list, FixedPredictions]:
    rows = max(len(r.classes) for r in records) + 10
    batches, preds = [], []
    for start in range(0, len(records), batch_size):
        batch = records[start:start + batch_size]
        metas = [letterbox_meta(r) for r in batch]
        images = torch.full((len(batch), 3, INPUT_SIZE, INPUT_SIZE), 255, dtype=torch.uint8)
        batches.append((images, torch.zeros(0, 6), metas))
        preds.append(torch.stack([ground_truth_as_pred(r, m, rows) for r, m in zip(batch, metas)]))
    return batches, FixedPredictions(preds)


@pytest.mark.shared("data/coco128")
def test_ground_truth_in_letterboxed_coordinates_scores_map_one():
    records, names = coco128_records(6)
    category_ids = list(range(1, NC + 1))
    gt = coco_ground_truth(records, category_ids, names)
    loader, model = loader_and_model(records, batch_size=4)
    model.train()
    result = evaluate(model, loader, coco_gt=gt, category_ids=category_ids, conf_thres=0.001, iou_thres=0.6,
                      max_det=300, device="cpu")
    assert result.metrics["map50_95"] == pytest.approx(1.0)
    assert result.metrics["map50"] == pytest.approx(1.0)
    assert set(result.metrics) == {"map50_95", "map50", "map75", "map_small", "map_medium", "map_large"}
    assert result.images == 6 and result.seconds > 0
    # the stages split the call's wall time (only the setup before the first batch is outside them)
    assert list(result.stage_seconds) == list(STAGES) and min(result.stage_seconds.values()) >= 0
    assert result.seconds * 0.9 <= sum(result.stage_seconds.values()) <= result.seconds
    assert len(result.predictions) == len(gt["annotations"])
    assert {p["category_id"] for p in result.predictions} == {a["category_id"] for a in gt["annotations"]}
    assert all(p["score"] == 0.9 and all(round(v, 3) == v for v in p["bbox"]) for p in result.predictions)
    assert model.seen == [(False, True, torch.float32, 1.0)] * 2, "eval mode, inference mode, images / 255"
    assert model.training, "the model's training mode must be restored"


@pytest.mark.shared("data/coco128")
def test_a_wrong_letterbox_mapping_would_be_caught():
    records, names = coco128_records(4)
    category_ids = list(range(NC))
    gt = coco_ground_truth(records, category_ids, names)
    loader, model = loader_and_model(records, batch_size=4)
    for meta in loader[0][2]:
        (ratio, _), (pad_x, pad_y) = meta["ratio_pad"]
        meta["ratio_pad"] = ((ratio, ratio), (pad_y, pad_x))  # padding swapped between x and y
    result = evaluate(model.eval(), loader, coco_gt=gt, category_ids=category_ids, conf_thres=0.001, iou_thres=0.6,
                      max_det=300, device="cpu")
    assert result.metrics["map50_95"] < 0.2
    assert not model.training


@pytest.mark.shared("data/coco128")
def test_class_count_mismatch_between_model_and_category_ids_raises():
    records, names = coco128_records(2)
    gt = coco_ground_truth(records, list(range(NC)), names)
    loader, model = loader_and_model(records, batch_size=2)
    with pytest.raises(ValueError, match="80 classes, category_ids has 79"):
        evaluate(model, loader, coco_gt=gt, category_ids=list(range(79)), conf_thres=0.001, iou_thres=0.6,
                 max_det=300, device="cpu")


@pytest.mark.shared("data/coco128")
def test_ground_truth_for_prefers_the_datasets_own_json():
    records, names = coco128_records(3)
    spec = DatasetSpec(name="coco128", names=names, train=records, val=records)
    assert ground_truth_for(spec) == coco_ground_truth(records, list(range(NC)), names)
    own_json = {"images": [], "annotations": [], "categories": []}
    spec.val_coco_gt = own_json
    assert ground_truth_for(spec) is own_json
