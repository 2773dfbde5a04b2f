"""`DetectionDataset`: images and YOLO labels as tensors, for training (mosaic + affine + HSV +
flips) and for evaluation (letterbox, optionally YOLOv5's rectangular batches).

Follows YOLOv5 v7.0's `LoadImagesAndLabels` (ultralytics/yolov5, `utils/dataloaders.py`);
evaluation at 640 with `rect=True, pad=0.5, stride=32` reproduces its input shapes, the ones
behind the coco128 reference of yolov5n (mAP50-95 0.367 against the YOLO labels,
`../shared/data/coco128/README.md`).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from lightyolo.data.records import ImageRecord
from lightyolo.data.transforms import (AugmentHyp, augment_hsv, letterbox, load_resized, mixup, mosaic4,
                                       random_affine, xyxy_to_yolo, yolo_to_xyxy)

Sample = tuple[torch.Tensor, torch.Tensor, dict[str, Any]]
RatioPad = tuple[tuple[float, float], tuple[float, float]]  # ((ry, rx), (pad_x, pad_y))


class DetectionDataset(Dataset):
    """Samples `(img, labels, meta)`.

    - `img`: uint8 (3, H, W) RGB.
    - `labels`: float32 (n, 6) rows `[0, cls, cx, cy, w, h]`, normalised to the returned image
      (column 0 becomes the batch index in `collate`).
    - `meta`: `image_id`, `path`, `orig_shape` (h0, w0) and `ratio_pad` ((ry, rx), (pad_x,
      pad_y)) with x_out = x_orig * rx + pad_x (None with `augment=True`: mosaic and affine
      samples have no single linear mapping back).

    `augment=False` letterboxes to `img_size` square, or with `rect=True` to per-batch
    rectangles (records are then sorted by aspect ratio: `self.records` is the sample order,
    and a loader must not shuffle). `augment=True` applies mosaic (probability hyp.mosaic;
    never with rect), random affine, mixup, HSV jitter and flips.

    Augmentation draws from `self.rng`; an index may also be `(i, seed)` to draw from a fresh
    generator seeded with `seed`, which is how `build_dataloader` makes batches reproducible.
    """

    def __init__(self, records: list[ImageRecord], img_size: int, *, augment: bool,
                 hyp: AugmentHyp | None = None, rect: bool = False, batch_size: int = 16,
                 stride: int = 32, pad: float = 0.5, cache_images: bool = False) -> None:
        if not records:
            raise ValueError("DetectionDataset: records is empty")
        if img_size % stride:
            raise ValueError(f"DetectionDataset: img_size {img_size} must be a multiple of stride {stride}")
        self.img_size = img_size
        self.augment = augment
        self.hyp = hyp or AugmentHyp()
        self.rect = rect
        self.batch_size = batch_size
        self.stride = stride
        self.rng = np.random.default_rng(0)
        self.records = list(records)
        self.batch_shapes: np.ndarray | None = None  # (n_batches, 2) as (h, w), rect only
        if rect:
            self.records, self.batch_shapes = _rect_batches(self.records, img_size, batch_size, stride, pad)
        self._cache: list[np.ndarray] | None = None
        if cache_images:
            self._cache = [load_resized(r.path, img_size, fast=augment)[0] for r in self.records]

    def __len__(self) -> int:
        return len(self.records)

    def reseed(self, seed: int) -> None:
        """Restart `self.rng` (the generator used for plain integer indices)."""
        self.rng = np.random.default_rng(seed)

    def __getitem__(self, index: int | tuple[int, int]) -> Sample:
        if isinstance(index, tuple):
            index, seed = index
            rng = np.random.default_rng(seed)
        else:
            rng = self.rng
        record = self.records[index]
        meta: dict[str, Any] = {"image_id": record.image_id, "path": str(record.path),
                                "orig_shape": (record.height, record.width)}
        if self.augment:
            img, classes, boxes, meta["ratio_pad"] = self._augmented(index, rng)
        else:
            img, classes, boxes, meta["ratio_pad"] = self._letterboxed(index, self._target_shape(index),
                                                                       scaleup=False)
        h, w = img.shape[:2]
        labels = np.zeros((len(classes), 6), dtype=np.float32)
        labels[:, 1] = classes
        labels[:, 2:] = xyxy_to_yolo(boxes, w, h)
        chw = torch.from_numpy(np.ascontiguousarray(img.transpose(2, 0, 1)))
        return chw, torch.from_numpy(labels), meta

    @staticmethod
    def collate(batch: list[Sample]) -> tuple[torch.Tensor, torch.Tensor, list[dict[str, Any]]]:
        """Stack images; concatenate labels with column 0 set to the index in the batch."""
        images, labels, metas = zip(*batch)
        for i, image_labels in enumerate(labels):
            image_labels[:, 0] = i
        return torch.stack(images), torch.cat(labels), list(metas)

    def _target_shape(self, index: int) -> tuple[int, int]:
        if self.batch_shapes is not None:
            h, w = self.batch_shapes[index // self.batch_size]
            return int(h), int(w)
        return self.img_size, self.img_size

    def _load(self, index: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Resized image (long side img_size), classes, and pixel xyxy boxes on that image."""
        record = self.records[index]
        img = self._cache[index] if self._cache is not None else \
            load_resized(record.path, self.img_size, fast=self.augment)[0]
        h, w = img.shape[:2]
        return img, record.classes, yolo_to_xyxy(record.boxes, w, h)

    def _letterboxed(self, index: int, shape: tuple[int, int], *, scaleup: bool
                     ) -> tuple[np.ndarray, np.ndarray, np.ndarray, RatioPad]:
        record = self.records[index]
        img, classes, boxes = self._load(index)
        h, w = img.shape[:2]
        img, ratio, (pad_x, pad_y) = letterbox(img, shape, scaleup=scaleup)
        boxes = boxes * ratio + np.array([pad_x, pad_y, pad_x, pad_y], dtype=np.float32)
        ratio_pad = ((ratio * h / record.height, ratio * w / record.width), (pad_x, pad_y))
        return img, classes, boxes, ratio_pad

    def _augmented(self, index: int, rng: np.random.Generator
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray, None]:
        """Augmented image, classes, pixel boxes; no ratio_pad (pixels come from several
        images or were warped, so there is no simple mapping back)."""
        hyp = self.hyp
        use_mosaic = not self.rect and rng.random() < hyp.mosaic
        if use_mosaic:
            img, classes, boxes = self._mosaic(index, rng)
        else:
            img, classes, boxes, _ = self._letterboxed(index, self._target_shape(index), scaleup=True)
            img, boxes, keep = random_affine(img, boxes, img.shape[:2], hyp, rng)
            classes, boxes = classes[keep], boxes[keep]
        if use_mosaic and rng.random() < hyp.mixup:
            other = self._mosaic(int(rng.integers(len(self))), rng)
            img, boxes, classes = mixup(img, boxes, classes, other[0], other[2], other[1], rng)
        img = augment_hsv(img, hyp, rng)
        h, w = img.shape[:2]
        if rng.random() < hyp.flipud:
            img = img[::-1]
            boxes = np.stack([boxes[:, 0], h - boxes[:, 3], boxes[:, 2], h - boxes[:, 1]], axis=1)
        if rng.random() < hyp.fliplr:
            img = img[:, ::-1]
            boxes = np.stack([w - boxes[:, 2], boxes[:, 1], w - boxes[:, 0], boxes[:, 3]], axis=1)
        return img, classes, boxes.reshape(-1, 4), None

    def _mosaic(self, index: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Mosaic of this image and three random others, warped to img_size square."""
        indices = [index, *rng.integers(len(self), size=3).tolist()]
        rng.shuffle(indices)
        loaded = [self._load(i) for i in indices]
        canvas, boxes = mosaic4([im for im, _, _ in loaded], [b for _, _, b in loaded], self.img_size, rng)
        classes = np.concatenate([c for _, c, _ in loaded])
        img, warped, keep = random_affine(canvas, np.concatenate(boxes), (self.img_size, self.img_size),
                                          self.hyp, rng)
        return img, classes[keep], warped[keep]


def _rect_batches(records: list[ImageRecord], img_size: int, batch_size: int, stride: int, pad: float
                  ) -> tuple[list[ImageRecord], np.ndarray]:
    """Records sorted by aspect ratio (h / w) and each batch's (h, w) input shape.

    A batch's shape fits its most extreme aspect ratio: ceil(relative shape * img_size /
    stride + pad) * stride, exactly as YOLOv5's `LoadImagesAndLabels(rect=True)`.
    """
    aspect = np.array([r.height / r.width for r in records])
    order = np.argsort(aspect, kind="stable")
    aspect = aspect[order]
    n_batches = math.ceil(len(records) / batch_size)
    relative = np.ones((n_batches, 2))
    for b in range(n_batches):
        batch_aspect = aspect[b * batch_size:(b + 1) * batch_size]
        if batch_aspect.max() < 1:
            relative[b] = (batch_aspect.max(), 1)
        elif batch_aspect.min() > 1:
            relative[b] = (1, 1 / batch_aspect.min())
    shapes = np.ceil(relative * img_size / stride + pad).astype(int) * stride
    return [records[i] for i in order], shapes
