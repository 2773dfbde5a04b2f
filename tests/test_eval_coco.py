"""COCO conversion and pycocotools evaluation on the real coco128 (929 boxes, 128 images)."""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path

import numpy as np
import pytest

from lightyolo.data.records import ImageRecord
from lightyolo.data.specs import read_class_names
from lightyolo.data.yolo_format import read_yolo_split
from lightyolo.eval.coco import coco_evaluate, coco_ground_truth

from conftest import COCO128
OFFICIAL_JSON = COCO128 / "annotations" / "instances_train2017.json"


@lru_cache(maxsize=1)
def official_gt() -> dict:
    return json.loads(OFFICIAL_JSON.read_text())


@lru_cache(maxsize=1)
def coco128() -> tuple[list[ImageRecord], list[int], list[str]]:
    """Records from the YOLO labels, COCO's category ids (class i → i-th id by value), names."""
    names = read_class_names(COCO128 / "data.yaml")
    records, _ = read_yolo_split(COCO128 / "images" / "train2017", COCO128 / "labels" / "train2017", len(names))
    category_ids = sorted(category["id"] for category in official_gt()["categories"])
    return records, category_ids, names


def labels_gt() -> dict:
    records, category_ids, names = coco128()
    return coco_ground_truth(records, category_ids, names)


def as_detections(gt: dict, dx_fraction: float = 0.0) -> list[dict]:
    """The non-crowd GT boxes as detections (distinct scores), optionally shifted right by a fraction of their width."""
    annotations = [a for a in gt["annotations"] if not a["iscrowd"]]
    return [
        {
            "image_id": a["image_id"],
            "category_id": a["category_id"],
            "bbox": [a["bbox"][0] + dx_fraction * a["bbox"][2], *a["bbox"][1:]],
            "score": 1.0 - index / (2 * len(annotations)),
        }
        for index, a in enumerate(annotations)
    ]


@pytest.mark.shared("data/coco128")
def test_ground_truth_from_coco128_labels_matches_the_official_boxes():
    gt = labels_gt()
    assert len(gt["images"]) == 128 and len(gt["annotations"]) == 929 and len(gt["categories"]) == 80
    assert [a["id"] for a in gt["annotations"]] == list(range(1, 930))
    assert all(a["iscrowd"] == 0 and a["area"] == pytest.approx(a["bbox"][2] * a["bbox"][3]) for a in gt["annotations"])
    official = {}
    for a in official_gt()["annotations"]:
        if not a["iscrowd"]:
            official.setdefault((a["image_id"], a["category_id"]), []).append(np.array(a["bbox"]))
    worst = max(
        min(np.abs(np.array(a["bbox"]) - box).max() for box in official[(a["image_id"], a["category_id"])])
        for a in gt["annotations"]
    )
    assert worst < 0.5, f"a label box is {worst:.2f} px away from every official box of its class"


@pytest.mark.shared("data/coco128")
def test_perfect_predictions_score_map_one(capsys):
    stats = coco_evaluate(labels_gt(), as_detections(labels_gt()))
    assert stats.map50_95 == pytest.approx(1.0) and stats.map50 == pytest.approx(1.0) and stats.map75 == pytest.approx(1.0)
    assert stats.map_small == pytest.approx(1.0)
    assert stats.map_medium == pytest.approx(1.0)
    assert stats.map_large == pytest.approx(1.0)
    assert len(stats.stats) == 12 and stats.stats[8] == pytest.approx(1.0)  # AR@100
    assert capsys.readouterr().out == "", "pycocotools' prints must not reach stdout"


@pytest.mark.shared("data/coco128")
def test_perfect_predictions_against_the_official_json_with_crowd_regions_score_map_one():
    stats = coco_evaluate(official_gt(), as_detections(official_gt()))
    assert stats.map50_95 == pytest.approx(1.0)


@pytest.mark.shared("data/coco128")
def test_boxes_shifted_by_30_percent_of_width_only_count_at_iou_half():
    # IoU of a box with itself shifted by 30 % of its width: 0.7 / 1.3 = 0.54
    stats = coco_evaluate(labels_gt(), as_detections(labels_gt(), dx_fraction=0.3))
    assert stats.map50 > 0.95
    assert stats.map75 < 0.05
    assert 0.08 < stats.map50_95 < 0.12


@pytest.mark.shared("data/coco128")
def test_no_detections_score_zero_without_crashing():
    stats = coco_evaluate(labels_gt(), [])
    assert stats.map50_95 == 0.0 and stats.map50 == 0.0 and stats.stats == [0.0] * 12


@pytest.mark.shared("data/coco128")
def test_zero_based_class_ids_against_coco_category_ids_raise():
    detections = as_detections(labels_gt())
    for detection, cls in zip(detections, range(len(detections))):
        detection["category_id"] = cls % 80  # 0-based class index instead of COCO's 1..90 id
    with pytest.raises(ValueError, match=r"category_id\(s\) \[0, 12, 26"):
        coco_evaluate(official_gt(), detections)


@pytest.mark.shared("data/coco128")
def test_detections_on_unknown_images_raise():
    detections = as_detections(labels_gt())[:3]
    detections[1]["image_id"] = 999_999
    with pytest.raises(ValueError, match="999999"):
        coco_evaluate(labels_gt(), detections)


@pytest.mark.shared("data/coco128")
def test_evaluation_leaves_the_callers_detections_untouched():
    detections = as_detections(labels_gt())[:5]
    before = json.dumps(detections)
    coco_evaluate(labels_gt(), detections)
    assert json.dumps(detections) == before


@pytest.mark.shared("data/coco128")
def test_ground_truth_with_annotation_id_zero_is_rejected():
    gt = labels_gt()
    gt["annotations"][0]["id"] = 0
    with pytest.raises(ValueError, match="annotation id 0"):
        coco_evaluate(gt, as_detections(gt))


@pytest.mark.shared("data/coco128")
def test_half_the_boxes_missing_halves_recall():
    gt = labels_gt()
    detections = as_detections(gt)[::2]
    stats = coco_evaluate(gt, detections)
    assert 0.4 < stats.stats[8] < 0.6  # AR@100
    assert 0.4 < stats.map50_95 < 0.6
