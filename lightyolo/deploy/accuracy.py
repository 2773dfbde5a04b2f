"""mAP measured through a deployed runtime: the evaluator of `lightyolo.eval.evaluate` with the
runtime's session as its forward function.

Same pre-processing, decode, NMS, COCO conversion and pycocotools path as the PyTorch
evaluation, rectangular batches included (`eval.rect`, YOLOv5's val.py letterbox): an export
has a fixed input shape, so the runtime gets one export per distinct batch shape (coco128 at
640 has five), each loaded when first met; INT8 models are calibrated at their own shape.
With rect off every image is letterboxed square to the export's size. The split is the one
the cell reports on: test when the dataset has one, else val (pipeline.evaluate_final's rule).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from lightyolo.data.dataset import DetectionDataset
from lightyolo.data.loader import build_dataloader
from lightyolo.data.records import DatasetSpec, ImageRecord
from lightyolo.deploy.runtime import Session
from lightyolo.eval.evaluate import EvalResult, evaluate, ground_truth_for

PREPROCESSING = {
    True: "rectangular letterbox per batch as the PyTorch evaluation (one export per batch shape), RGB/255, one image per call",
    False: "square letterbox to the export's size, RGB/255, one image per call",
}


@dataclass(frozen=True)
class EvalOptions:
    conf_thres: float = 0.001
    iou_thres: float = 0.6
    max_det: int = 300
    batch_size: int = 16
    rect: bool = True


def report_split(spec: DatasetSpec) -> str:
    return "test" if spec.test is not None else "val"


SessionsByShape = Callable[[tuple[int, int]], Session]


def session_forward(session: Session | SessionsByShape) -> Callable[[torch.Tensor], torch.Tensor]:
    """The evaluator's forward function for a session, or for a function giving the session of
    each input shape (H, W): one image per call (exports have batch 1)."""
    session_for = (lambda _: session) if hasattr(session, "run") else session

    def forward(inputs: torch.Tensor) -> torch.Tensor:
        images = inputs.detach().to("cpu", torch.float32).contiguous().numpy()
        runner = session_for(tuple(images.shape[-2:]))
        return torch.from_numpy(np.concatenate([runner.run(image[None]) for image in images]))

    return forward


def evaluate_session(
    session: Session | SessionsByShape, records: list[ImageRecord], coco_gt: dict, category_ids: list[int], img: int,
    options: EvalOptions, stride: int = 32,
) -> EvalResult:
    """COCO-evaluate `session` (one session, or one per input shape) on `records` (module
    docstring); rect batches need the per-shape form."""
    dataset = DetectionDataset(records, img, augment=False, rect=options.rect, batch_size=options.batch_size,
                               stride=stride)
    loader = build_dataloader(dataset, batch_size=options.batch_size, workers=0, shuffle=False, seed=0)
    return evaluate(
        None, loader, coco_gt=coco_gt, category_ids=category_ids, conf_thres=options.conf_thres,
        iou_thres=options.iou_thres, max_det=options.max_det, device="cpu", forward=session_forward(session),
    )


def evaluate_on_split(
    session: Session | SessionsByShape, spec: DatasetSpec, img: int, options: EvalOptions, stride: int = 32
) -> tuple[str, EvalResult]:
    """(split, result) of `session` on the split the cell reports on."""
    split = report_split(spec)
    records = spec.test if split == "test" else spec.val
    return split, evaluate_session(session, records, ground_truth_for(spec, split), spec.category_ids, img, options, stride)
