"""mAP measured through a deployed runtime: the evaluator of `lightyolo.eval.evaluate` with the
runtime's session as its forward function.

Same pre-processing, decode, NMS, COCO conversion and pycocotools path as the PyTorch
evaluation, with one difference every runtime (PyTorch included) shares: images are
letterboxed square to the export's size (`rect=False`), because an export has a fixed input
shape; YOLOv5's rectangular batches are a PyTorch-only shortcut. The split is the one the
cell reports on: test when the dataset has one, else val (pipeline.evaluate_final's rule).
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

PREPROCESSING = "square letterbox to the export's size (rect=False), RGB/255, one image per call"


@dataclass(frozen=True)
class EvalOptions:
    conf_thres: float = 0.001
    iou_thres: float = 0.6
    max_det: int = 300
    batch_size: int = 16


def report_split(spec: DatasetSpec) -> str:
    return "test" if spec.test is not None else "val"


def session_forward(session: Session) -> Callable[[torch.Tensor], torch.Tensor]:
    """The evaluator's forward function for `session`: one image per call (exports have batch 1)."""

    def forward(inputs: torch.Tensor) -> torch.Tensor:
        images = inputs.detach().to("cpu", torch.float32).contiguous().numpy()
        return torch.from_numpy(np.concatenate([session.run(image[None]) for image in images]))

    return forward


def evaluate_session(
    session: Session, records: list[ImageRecord], coco_gt: dict, category_ids: list[int], img: int,
    options: EvalOptions,
) -> EvalResult:
    """COCO-evaluate `session` on `records` (module docstring)."""
    dataset = DetectionDataset(records, img, augment=False, rect=False)
    loader = build_dataloader(dataset, batch_size=options.batch_size, workers=0, shuffle=False, seed=0)
    return evaluate(
        None, loader, coco_gt=coco_gt, category_ids=category_ids, conf_thres=options.conf_thres,
        iou_thres=options.iou_thres, max_det=options.max_det, device="cpu", forward=session_forward(session),
    )


def evaluate_on_split(session: Session, spec: DatasetSpec, img: int, options: EvalOptions) -> tuple[str, EvalResult]:
    """(split, result) of `session` on the split the cell reports on."""
    split = report_split(spec)
    records = spec.test if split == "test" else spec.val
    return split, evaluate_session(session, records, ground_truth_for(spec, split), spec.category_ids, img, options)
