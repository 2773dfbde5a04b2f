"""The evaluation loop: run a detector over a val loader and score it with the COCO metrics.

Follows YOLOv5's val.py (ultralytics/yolov5 v7.0) for the COCO-json path: inference, NMS
(conf 0.001, IoU 0.6, 300 detections in its defaults), boxes mapped back to original pixels
through each image's letterbox ratio and padding, results rounded like its `save_one_json`
(bbox to 3 decimals, score to 5), then pycocotools — the protocol behind yolov5n's
mAP50-95 0.370 / mAP50 0.576 on coco128 (shared/data/coco128/README.md).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import torch
from torch import nn
from tqdm import tqdm

from lightyolo.data.records import DatasetSpec
from lightyolo.eval.boxes import scale_boxes_to_original, xyxy_to_xywh
from lightyolo.eval.coco import coco_evaluate, coco_ground_truth
from lightyolo.eval.nms import has_objectness, non_max_suppression


@dataclass
class EvalResult:
    """`metrics`: map50_95, map50, map75, map_small, map_medium, map_large; `predictions`: COCO
    results (original pixels); `seconds`: wall time of the whole call; `images`: images seen;
    `stage_seconds`: that wall time split into STAGES."""

    metrics: dict[str, float]
    predictions: list[dict]
    seconds: float
    images: int
    stage_seconds: dict[str, float]


# Where an evaluation's wall time goes: waiting for the loader (decode, letterbox, collate),
# the forward, NMS, boxes back to original pixels as COCO dicts, pycocotools.
STAGES = ("load", "inference", "nms", "to_coco", "cocoeval")


def ground_truth_for(spec: DatasetSpec, split: str = "val") -> dict:
    """The COCO ground truth of `split` ("val" or "test"): the dataset's own json for it when
    it has one, else converted from that split's records."""
    if split not in ("val", "test"):
        raise ValueError(f"ground_truth_for: split must be 'val' or 'test', got {split!r}")
    own, records = (spec.val_coco_gt, spec.val) if split == "val" else (spec.test_coco_gt, spec.test)
    if own is not None:
        return own
    if records is None:
        raise ValueError(f"dataset {spec.name!r} has no {split} split")
    return coco_ground_truth(records, spec.category_ids, spec.names)


def coco_results(detections: torch.Tensor, image_id: int, category_ids: list[int]) -> list[dict]:
    """(n, 6) `[x1, y1, x2, y2, conf, cls]` in original pixels → COCO result dicts."""
    boxes = xyxy_to_xywh(detections[:, :4])
    boxes[:, :2] -= boxes[:, 2:] / 2  # COCO boxes start at the top-left corner
    return [
        {
            "image_id": image_id,
            "category_id": category_ids[int(cls)],
            "bbox": [round(value, 3) for value in box],
            "score": round(score, 5),
        }
        for box, score, cls in zip(boxes.tolist(), detections[:, 4].tolist(), detections[:, 5].tolist())
    ]


def evaluate(
    model: nn.Module | None,
    loader: Iterable,
    *,
    coco_gt: dict,
    category_ids: list[int],
    conf_thres: float,
    iou_thres: float,
    max_det: int,
    device: torch.device | str,
    amp: bool = False,
    forward: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> EvalResult:
    """COCO-evaluate `model` on `loader`, which yields (uint8 imgs, targets, metas).

    The model runs in eval mode under inference_mode and gets its previous mode back; its eval
    forward returns `(pred, raw)` with `pred` (B, N, 5 + nc) decoded as YOLOv5's Detect does,
    or (B, N, 4 + nc) without objectness (the anchor-free head; models/heads/__init__.py).
    `forward` instead of `model` (then None): any runtime's function from the float (B, 3, H, W)
    input in [0, 1] to that `pred`, e.g. a deployed model's (lightyolo.deploy); everything
    else (pre-processing, NMS, COCO conversion, pycocotools) is the same path.
    """
    start = time.perf_counter()
    device = torch.device(device)
    if (model is None) == (forward is None):
        raise ValueError("evaluate: give a model or a forward function, not both")
    was_training = model.training if model is not None else False
    if model is not None:
        model.eval()
    predictions: list[dict] = []
    images = 0
    clock = _StageClock(device)
    try:
        with torch.inference_mode():
            for imgs, _targets, metas in tqdm(loader, desc="eval", disable=not sys.stderr.isatty()):
                clock.lap("load")
                # batches come channels_last; contiguous NCHW as before keeps the kernels (and so
                # the detections) those of YOLOv5's val.py
                inputs = imgs.to(device, non_blocking=True).contiguous().float() / 255
                if forward is not None:
                    pred = forward(inputs)
                else:
                    with torch.autocast(device.type, enabled=amp):
                        pred = model(inputs)[0]
                objectness = has_objectness(pred, len(category_ids), getattr(getattr(model, "head", None), "objectness", None))
                clock.lap("inference")
                per_image = [
                    d.cpu() for d in non_max_suppression(pred.float(), conf_thres, iou_thres, max_det, objectness=objectness)
                ]
                clock.lap("nms")
                for detections, meta in zip(per_image, metas, strict=True):
                    detections[:, :4] = scale_boxes_to_original(detections[:, :4], meta["ratio_pad"], meta["orig_shape"])
                    predictions += coco_results(detections, int(meta["image_id"]), category_ids)
                images += len(metas)
                clock.lap("to_coco")
    finally:
        if model is not None:
            model.train(was_training)
    stats = coco_evaluate(coco_gt, predictions)
    clock.lap("cocoeval")
    return EvalResult(metrics=stats.metrics(), predictions=predictions, seconds=time.perf_counter() - start,
                      images=images, stage_seconds=clock.seconds)


class _StageClock:
    """Wall time per stage: `lap(stage)` adds the time since the previous lap to `stage`. On
    CUDA it synchronizes first, so that asynchronous kernels count where they were launched."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.seconds = dict.fromkeys(STAGES, 0.0)
        self._last = time.perf_counter()

    def lap(self, stage: str) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        now = time.perf_counter()
        self.seconds[stage] += now - self._last
        self._last = now
