"""The data seam: readers (YOLO-format dirs, COCO json, the synthetic generator) produce
`DatasetSpec`s of `ImageRecord`s; one `DetectionDataset` loads and augments any of them, and
evaluation builds its ground truth from the records (or uses the dataset's own COCO json).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np


@dataclass(frozen=True)
class ImageRecord:
    """One image and its boxes.

    `boxes` are YOLO-normalised (cx, cy, w, h) in 0..1 of the original image, shape (n, 4)
    float32; `classes` are contiguous class indices 0..nc-1, shape (n,) int64.
    `image_id` is the id evaluation reports detections under (the COCO json's id when the
    dataset has one).
    """

    image_id: int
    path: Path
    width: int
    height: int
    classes: np.ndarray
    boxes: np.ndarray


@dataclass
class DatasetSpec:
    """A dataset ready to train and evaluate on.

    `category_ids[i]` is the id evaluation reports class i under (the json's category id for
    COCO-json datasets, i otherwise). `val_coco_gt` is the dataset's own COCO ground-truth
    dict when it has one; None means evaluation converts the val records in memory.
    `test` is the optional held-out split (None when the dataset has none): model selection
    uses val, reporting uses test; `test_coco_gt` is its own COCO ground truth, like
    `val_coco_gt`. `issues` counts what readers reported and skipped (corrupt images,
    malformed label lines, orphan label files, ...) as "<split>/<key>", for the run's log.
    """

    name: str
    names: list[str]
    train: list[ImageRecord]
    val: list[ImageRecord]
    category_ids: list[int] = field(default_factory=list)
    val_coco_gt: dict | None = None
    issues: dict[str, int] = field(default_factory=dict)
    test: list[ImageRecord] | None = None
    test_coco_gt: dict | None = None

    def __post_init__(self) -> None:
        if not self.category_ids:
            self.category_ids = list(range(len(self.names)))

    @property
    def nc(self) -> int:
        return len(self.names)
