"""Evaluation against a dataset's own COCO json: real pycocotools on coco128's official json
(crowd regions ignored, segmentation areas), and runs of `pipeline.run` through
`dataset=coco128_json` (a tiny training run; the slow yolov5n parity figure)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lightyolo import pipeline
from lightyolo.data.specs import coco_dataset
from lightyolo.eval.coco import coco_evaluate
from lightyolo.store.client import Store

from conftest import COCO128, YOLOV5N_WEIGHTS, compose_config, tiny_overrides

SPLIT = {"images": "images/train2017", "annotations": "annotations/instances_train2017.json"}


@pytest.fixture(scope="module")
def coco128_spec(tmp_path_factory):
    return coco_dataset(str(COCO128), train=SPLIT, val=SPLIT, cache_dir=str(tmp_path_factory.mktemp("cache")))


def _ground_truth_as_detections(gt: dict, *, crowd: bool = False, shift: float = 0.0) -> list[dict]:
    """The GT boxes as score-1 detections under the json's ids, optionally moved right by
    `shift` box widths."""
    return [
        {"image_id": a["image_id"], "category_id": a["category_id"], "score": 1.0,
         "bbox": [a["bbox"][0] + shift * a["bbox"][2], *a["bbox"][1:]]}
        for a in gt["annotations"] if crowd or not a["iscrowd"]
    ]


@pytest.mark.shared("data/coco128")
def test_perfect_predictions_score_map_one_with_crowd_regions_ignored(coco128_spec):
    gt = coco128_spec.val_coco_gt
    assert sum(a["iscrowd"] for a in gt["annotations"]) == 10
    stats = coco_evaluate(gt, _ground_truth_as_detections(gt))
    assert stats.map50_95 == pytest.approx(1.0) and stats.map50 == pytest.approx(1.0)
    # a detection on a crowd region matches it and is ignored: neither hit nor false positive
    with_crowd = coco_evaluate(gt, _ground_truth_as_detections(gt, crowd=True))
    assert with_crowd.map50_95 == pytest.approx(1.0)


@pytest.mark.shared("data/coco128")
def test_size_buckets_follow_the_json_segmentation_areas(coco128_spec):
    gt = coco128_spec.val_coco_gt
    stats = coco_evaluate(gt, _ground_truth_as_detections(gt))
    assert (stats.map_small, stats.map_medium, stats.map_large) == pytest.approx((1.0, 1.0, 1.0))
    # areas are the json's (segmentation) areas, not box areas: pycocotools buckets by them
    assert sum(a["area"] < 32 ** 2 for a in gt["annotations"]) != sum(
        a["bbox"][2] * a["bbox"][3] < 32 ** 2 for a in gt["annotations"])


@pytest.mark.shared("data/coco128")
def test_shifted_predictions_score_lower(coco128_spec):
    gt = coco128_spec.val_coco_gt
    shifted = coco_evaluate(gt, _ground_truth_as_detections(gt, shift=0.2))
    # a shift of 0.2 widths gives IoU 0.8/1.2 = 0.67: a hit at 0.50..0.65 (4 of the 10
    # thresholds), a miss above; a few shifted boxes match a neighbouring object instead
    assert shifted.map50 == pytest.approx(1.0, abs=0.005)
    assert shifted.map50_95 == pytest.approx(0.4, abs=0.005)
    # 0.6 widths: IoU 0.25 with its own object; only neighbours of the same class still match
    assert coco_evaluate(gt, _ground_truth_as_detections(gt, shift=0.6)).map50 == pytest.approx(0.019, abs=0.002)


@pytest.mark.shared("data/coco128")
def test_an_image_left_out_for_a_missing_file_is_left_out_of_the_ground_truth(tmp_path):
    content = json.loads((COCO128 / SPLIT["annotations"]).read_text())
    images = tmp_path / "images"
    images.mkdir()
    for image in content["images"][1:]:  # all but the first image's file
        (images / image["file_name"]).symlink_to(COCO128 / SPLIT["images"] / image["file_name"])
    split = {"images": "images", "annotations": str(COCO128 / SPLIT["annotations"])}
    spec = coco_dataset(str(tmp_path), train=split, val=split, cache_dir=None)
    assert spec.issues == {"train/missing_image_file": 1, "val/missing_image_file": 1}
    missing = content["images"][0]["id"]
    assert missing not in {image["id"] for image in spec.val_coco_gt["images"]}
    assert coco_evaluate(spec.val_coco_gt, _ground_truth_as_detections(spec.val_coco_gt)).map50_95 == pytest.approx(1.0)


@pytest.mark.shared("data/coco128", "weights/yolov5n.state_dict.pt")
def test_one_epoch_from_the_coco_json_runs_and_logs_coco_stats(tmp_path):
    """Fine-tunes yolov5n (so that it predicts something at 64 px) on 8 images for one epoch."""
    overrides = [o for o in tiny_overrides(tmp_path) if not o.startswith("dataset.")]
    cfg = compose_config(overrides + [
        "dataset=coco128_json", f"dataset.root={COCO128}", "dataset.limit=8", f"model.weights={YOLOV5N_WEIGHTS}",
        f"dataset.cache_dir={tmp_path / 'cache'}", "train.cache_images=false",
    ])
    result = pipeline.run(cfg, output_dir=tmp_path / "out")
    assert result.status == "completed"
    run = Store(cfg.mlflow.tracking_uri).runs_frame("lightyolo").iloc[0]
    assert run["tags.status"] == "completed" and run["tags.dataset"] == "coco128_json"
    assert 0.0 <= run["metrics.val/map50_95"] <= run["metrics.val/map50"] <= 1.0
    # 80 COCO classes: yolov5n's 1,757,152 without Detect, plus its 80-class Detect convs
    assert run["metrics.params"] == 1_757_152 + 3 * 85 * (64 + 128 + 256) + 3 * 3 * 85
    store = Path(cfg.mlflow.tracking_uri.removeprefix("sqlite:///")).parent / "mlartifacts" / "lightyolo"
    stats = json.loads(next(store.rglob("eval/coco_stats.json")).read_text())
    assert stats["map50_95"] == pytest.approx(result.metrics["map50_95"])
    predictions = json.loads(next(store.rglob("eval/predictions.json")).read_text())
    images = json.loads((COCO128 / SPLIT["annotations"]).read_text())["images"]
    first_eight = {image["id"] for image in sorted(images, key=lambda image: image["file_name"])[:8]}
    assert predictions and {p["image_id"] for p in predictions} <= first_eight
    assert {p["category_id"] for p in predictions} <= set(range(1, 91))


@pytest.mark.slow
@pytest.mark.shared("data/coco128", "weights/yolov5n.state_dict.pt")
def test_yolov5n_on_coco128_through_the_json_reproduces_yolov5s_map(tmp_path):
    """YOLOv5's predictions score 0.370 / 0.576 under pycocotools with this json; with the
    pipeline's default eval batch (16, see test_eval_yolov5n_parity.py for why the batch
    matters) lightyolo logs the figures the closing note of issue 7 reports."""
    cfg = compose_config([
        "dataset=coco128_json", f"dataset.root={COCO128}", f"dataset.cache_dir={tmp_path / 'cache'}",
        f"model.weights={YOLOV5N_WEIGHTS}", "train.epochs=0", "train.img_size=640", "train.workers=0",
        "bench.warmup=1", "bench.iters=2",
        f"mlflow.tracking_uri=sqlite:///{tmp_path / 'mlflow.db'}",
    ])
    result = pipeline.run(cfg, output_dir=tmp_path / "out")
    assert result.metrics["map50_95"] == pytest.approx(0.370, abs=0.01)
    assert result.metrics["map50"] == pytest.approx(0.576, abs=0.01)
