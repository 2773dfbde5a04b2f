"""COCO ground truth from records and the official COCO box metrics via pycocotools.

The only module that imports pycocotools. It reproduces the COCO detection protocol
(cocodataset.org/#detection-eval; pycocotools' COCOeval, the 12 numbers of `summarize()`)
that YOLOv5's val.py reports as mAP@0.5:0.95 and mAP@0.5 — e.g. yolov5n on coco128 at 640:
0.370 / 0.576 against the official json (shared/data/coco128/README.md).

pycocotools' traps handled here (the pycocotools traps, handled below): `loadRes([])` crashes, annotation id 0
reads as unmatched, missing `area`/`iscrowd` break evaluation, unknown category ids and image
ids are silently dropped or assert, and everything prints to stdout.
"""

from __future__ import annotations

import contextlib
import copy
import io
import logging
from dataclasses import asdict, dataclass, field

import numpy as np
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from lightyolo.data.records import ImageRecord

log = logging.getLogger(__name__)

# Indices into COCOeval.stats (fixed by summarize() for the default maxDets 1/10/100).
STAT_INDEX = {"map50_95": 0, "map50": 1, "map75": 2, "map_small": 3, "map_medium": 4, "map_large": 5}


@dataclass(frozen=True)
class CocoStats:
    """The COCO box metrics; `stats` is COCOeval's full 12-number summary.

    A size bucket with no ground truth reads -1 (pycocotools' convention).
    """

    map50_95: float
    map50: float
    map75: float
    map_small: float
    map_medium: float
    map_large: float
    stats: list[float] = field(default_factory=lambda: [0.0] * 12)

    @classmethod
    def from_stats(cls, stats: list[float]) -> CocoStats:
        return cls(**{name: float(stats[index]) for name, index in STAT_INDEX.items()}, stats=list(stats))

    def metrics(self) -> dict[str, float]:
        """The six headline metrics as a flat dict (for logging)."""
        values = asdict(self)
        return {name: values[name] for name in STAT_INDEX}


def coco_ground_truth(records: list[ImageRecord], category_ids: list[int], names: list[str]) -> dict:
    """A COCO ground-truth dict (images, box annotations, categories) built from records.

    Boxes go from YOLO-normalised cx, cy, w, h to COCO's x, y, w, h in original pixels; `area`
    is the box area in original pixels (it decides small/medium/large); annotation ids start
    at 1 because pycocotools reads id 0 as "unmatched".
    """
    if len(category_ids) != len(names):
        raise ValueError(f"coco_ground_truth: {len(category_ids)} category_ids for {len(names)} names")
    images, annotations = [], []
    for record in records:
        images.append({"id": int(record.image_id), "file_name": record.path.name,
                       "width": int(record.width), "height": int(record.height)})
        for cls, (cx, cy, w, h) in zip(record.classes.tolist(), np.asarray(record.boxes, dtype=np.float64).tolist()):
            if not 0 <= cls < len(category_ids):
                raise ValueError(f"coco_ground_truth: {record.path}: class {cls} outside 0..{len(category_ids) - 1}")
            width, height = w * record.width, h * record.height
            annotations.append({
                "id": len(annotations) + 1,
                "image_id": int(record.image_id),
                "category_id": int(category_ids[cls]),
                "bbox": [(cx - w / 2) * record.width, (cy - h / 2) * record.height, width, height],
                "area": width * height,
                "iscrowd": 0,
            })
    categories = [{"id": int(category_id), "name": name} for category_id, name in zip(category_ids, names)]
    return {"images": images, "annotations": annotations, "categories": categories}


def coco_evaluate(gt: dict, detections: list[dict]) -> CocoStats:
    """COCO box metrics of `detections` (COCO results: image_id, category_id, bbox xywh, score).

    Every GT image counts; images without detections count as misses. No detections at all →
    all zeros. Raises ValueError for detections on images or categories the GT lacks, which
    pycocotools would otherwise reject with a bare assert or silently ignore.
    """
    _check_ground_truth(gt)
    if not detections:
        log.info("coco_evaluate: no detections, every metric is 0")
        return CocoStats.from_stats([0.0] * 12)
    _check_detections(gt, detections)
    with contextlib.redirect_stdout(io.StringIO()) as printed:
        coco_gt = COCO()
        coco_gt.dataset = copy.deepcopy(gt)
        coco_gt.createIndex()
        # loadRes writes area/id/segmentation into the dicts it gets: give it copies
        coco_dt = coco_gt.loadRes(copy.deepcopy(detections))
        evaluator = COCOeval(coco_gt, coco_dt, iouType="bbox")
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    # pycocotools' 12-line printout only at DEBUG (`hydra.verbose=lightyolo.eval.coco`); one line here.
    for line in printed.getvalue().splitlines():
        log.debug(line)
    stats = CocoStats.from_stats([float(value) for value in evaluator.stats])
    log.info("COCO eval: mAP50-95 %.4f, mAP50 %.4f (%d images, %d detections)",
             stats.map50_95, stats.map50, len(gt["images"]), len(detections))
    return stats


def _check_ground_truth(gt: dict) -> None:
    for key in ("images", "annotations", "categories"):
        if key not in gt:
            raise ValueError(f"coco ground truth: missing key '{key}'")
    for annotation in gt["annotations"]:
        missing = [key for key in ("id", "image_id", "category_id", "bbox", "area", "iscrowd") if key not in annotation]
        if missing:
            raise ValueError(f"coco ground truth: annotation {annotation.get('id')} lacks {missing}")
        if annotation["id"] < 1:
            raise ValueError(f"coco ground truth: annotation id {annotation['id']} < 1 (pycocotools reads 0 as unmatched)")


def _check_detections(gt: dict, detections: list[dict]) -> None:
    for key in ("image_id", "category_id", "bbox", "score"):
        if key not in detections[0]:
            raise ValueError(f"coco detections: missing key '{key}' (expected image_id, category_id, bbox, score)")
    unknown_images = {d["image_id"] for d in detections} - {image["id"] for image in gt["images"]}
    if unknown_images:
        raise ValueError(f"coco detections: image_id(s) not in the ground truth: {sorted(unknown_images)[:10]}")
    unknown_categories = {d["category_id"] for d in detections} - {c["id"] for c in gt["categories"]}
    if unknown_categories:
        known = [c["id"] for c in gt["categories"]]
        known_range = f"{min(known)}..{max(known)}" if known else "none"
        raise ValueError(
            f"coco detections: category_id(s) {sorted(unknown_categories)[:10]} not in the ground truth's "
            f"categories (ids {known_range}); check the class → category_id mapping"
        )
