"""`DetectionDataset`: images and YOLO labels as tensors, for training (mosaic + affine + HSV +
flips) and for evaluation (letterbox, optionally YOLOv5's rectangular batches).

Follows YOLOv5 v7.0's `LoadImagesAndLabels` (ultralytics/yolov5, `utils/dataloaders.py`);
evaluation at 640 with `rect=True, pad=0.5, stride=32` reproduces its input shapes, the ones
behind the coco128 reference of yolov5n (mAP50-95 0.367 against the YOLO labels,
`../shared/data/coco128/README.md`).
"""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from lightyolo.data.image_cache import ImageCache, cache_mode
from lightyolo.data.records import ImageRecord
from lightyolo.data.transforms import (GREY, AugmentHyp, CorruptImageError, augment_hsv_into_new, box_candidates,
                                       flip_matrix, letterbox, load_resized, mixup, mosaic4, mosaic_centre,
                                       perspective_matrix, random_affine, shifted_source, source_region, warp_boxes,
                                       warp_image, xyxy_to_yolo, yolo_to_xyxy)

log = logging.getLogger(__name__)

Sample = tuple[torch.Tensor, torch.Tensor, dict[str, Any]]
RatioPad = tuple[tuple[float, float], tuple[float, float]]  # ((ry, rx), (pad_x, pad_y))


class DetectionDataset(Dataset):
    """Samples `(img, labels, meta)`.

    - `img`: uint8 (3, H, W) RGB, stored channels-last (a permuted view of an (H, W, 3)
      array: no transpose per sample; `collate` stacks into a channels_last batch).
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

    `cache_images`: 'ram' (or True) keeps the resized uint8 images in memory, 'disk' keeps
    them as `.npy` files under `cache_dir` (default ~/.cache/lightyolo/images), False decodes
    every time. An image that no longer decodes (it went bad after indexing) is logged with
    its path and reason once per process; in training the sample uses the next good image
    instead, in evaluation the image is scored as a grey one (its objects count as missed).
    """

    def __init__(self, records: list[ImageRecord], img_size: int, *, augment: bool,
                 hyp: AugmentHyp | None = None, rect: bool = False, batch_size: int = 16,
                 stride: int = 32, pad: float = 0.5, cache_images: bool | str = False,
                 cache_dir: Path | None = None) -> None:
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
        self._buffers: dict[tuple[str, tuple[int, ...]], np.ndarray] = {}  # reused per process
        self._pixel_boxes: dict[tuple[int, int, int], np.ndarray] = {}  # (index, w, h) -> xyxy boxes
        self.corrupt: dict[int, str] = {}  # index -> reason, the images found bad so far
        mode = cache_mode(cache_images)
        self._cache: ImageCache | None = None
        if mode is not None:
            self._cache = ImageCache(mode, self._decode, [r.path for r in self.records],
                                     key=f"{img_size}-{'linear' if augment else 'area'}",
                                     on_error=self._note_corrupt, disk_dir=cache_dir)

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
        chw = torch.from_numpy(img).permute(2, 0, 1)  # img is this sample's own contiguous array
        return chw, torch.from_numpy(labels), meta

    @staticmethod
    def collate(batch: list[Sample]) -> tuple[torch.Tensor, torch.Tensor, list[dict[str, Any]]]:
        """Stack images into a (B, 3, H, W) uint8 batch in channels_last memory (what training
        converts to anyway); concatenate labels with column 0 set to the index in the batch."""
        images, labels, metas = zip(*batch)
        for i, image_labels in enumerate(labels):
            image_labels[:, 0] = i
        hwc = torch.stack([image.permute(1, 2, 0) for image in images])
        return hwc.permute(0, 3, 1, 2), torch.cat(labels), list(metas)

    def _target_shape(self, index: int) -> tuple[int, int]:
        if self.batch_shapes is not None:
            h, w = self.batch_shapes[index // self.batch_size]
            return int(h), int(w)
        return self.img_size, self.img_size

    def _buffer(self, slot: str, shape: tuple[int, ...]) -> np.ndarray:
        """A uint8 array of `shape` reused from sample to sample (each sample's image is copied
        out in `__getitem__` before the next one starts)."""
        key = (slot, shape)
        if key not in self._buffers:
            self._buffers[key] = np.empty(shape, dtype=np.uint8)
        return self._buffers[key]

    def _decode(self, index: int) -> np.ndarray:
        """Decode and resize an image (long side img_size); CorruptImageError if it is bad."""
        record = self.records[index]
        img, shape = load_resized(record.path, self.img_size, fast=self.augment)
        if shape != (record.height, record.width):
            log.warning("image %s decodes to %dx%d (w x h) where the index says %dx%d; its boxes are "
                        "normalised, so they are placed by the index's proportions", record.path,
                        shape[1], shape[0], record.width, record.height)
        return img

    def _note_corrupt(self, index: int, error: CorruptImageError) -> None:
        if index not in self.corrupt:
            self.corrupt[index] = error.reason
            action = "replaced by the next good image" if self.augment else "scored as a grey image"
            log.warning("corrupt image %s: %s; %s", error.path, error.reason, action)

    def _image(self, index: int) -> np.ndarray | None:
        """The resized image, or None (logged) when it does not decode."""
        if index in self.corrupt:
            return None
        if self._cache is not None:
            img = self._cache.get(index)
            if img is not None or index in self.corrupt:
                return img
        try:
            return self._decode(index)
        except CorruptImageError as error:
            self._note_corrupt(index, error)
            return None

    def _load(self, index: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Resized image (long side img_size), classes, and pixel xyxy boxes on that image.

        A corrupt image is replaced: by the next good image in training, by a grey image of
        its resized shape and its own labels in evaluation.
        """
        record = self.records[index]
        img = self._image(index)
        if img is None and not self.augment:
            ratio = self.img_size / max(record.height, record.width)
            shape = (math.ceil(record.height * ratio), math.ceil(record.width * ratio), 3)
            img = np.full(shape, GREY, dtype=np.uint8)
        for step in range(1, len(self)):
            if img is not None:
                break
            index = (index + step) % len(self)
            record, img = self.records[index], self._image(index)
        if img is None:
            raise RuntimeError(f"DetectionDataset: every one of the {len(self)} images is corrupt "
                               f"(e.g. {self.records[0].path})")
        h, w = img.shape[:2]
        boxes = self._pixel_boxes.get((index, w, h))
        if boxes is None:  # the same few shapes recur every epoch: convert once
            boxes = self._pixel_boxes[(index, w, h)] = yolo_to_xyxy(record.boxes, w, h)
        return img, record.classes, boxes

    def _letterboxed(self, index: int, shape: tuple[int, int], *, scaleup: bool
                     ) -> tuple[np.ndarray, np.ndarray, np.ndarray, RatioPad]:
        record = self.records[index]
        loaded, classes, boxes = self._load(index)
        h, w = loaded.shape[:2]
        img, ratio, (pad_x, pad_y) = letterbox(loaded, shape, scaleup=scaleup)
        if img is loaded:  # neither resized nor padded: never hand out the cached array
            img = img.copy()
        boxes = boxes * ratio + np.array([pad_x, pad_y, pad_x, pad_y], dtype=np.float32)
        ratio_pad = ((ratio * h / record.height, ratio * w / record.width), (pad_x, pad_y))
        return img, classes, boxes, ratio_pad

    def _augmented(self, index: int, rng: np.random.Generator
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray, None]:
        """Augmented image, classes, pixel boxes; no ratio_pad (pixels come from several
        images or were warped, so there is no simple mapping back).

        The flips are drawn first and folded into the warp's matrix (flipping the warped image
        samples the same source points, so one warp does both); the HSV jitter then writes
        the sample's own new array, out of the reused buffers.
        """
        hyp = self.hyp
        use_mosaic = not self.rect and rng.random() < hyp.mosaic
        flip_ud, flip_lr = rng.random() < hyp.flipud, rng.random() < hyp.fliplr
        out_hw = self._target_shape(index)  # the mosaic's too: mosaic is never used with rect
        flip = flip_matrix(out_hw, up_down=flip_ud, left_right=flip_lr) if flip_ud or flip_lr else None
        if use_mosaic:
            img, classes, boxes = self._mosaic(index, rng, slot="mosaic", then=flip)
            if rng.random() < hyp.mixup:
                other = self._mosaic(int(rng.integers(len(self))), rng, slot="mixup", then=flip)
                img, boxes, classes = mixup(img, boxes, classes, other[0], other[2], other[1], rng)
        else:
            img, classes, boxes, _ = self._letterboxed(index, out_hw, scaleup=True)
            out = self._buffer("warp", img.shape)
            img, boxes, keep = random_affine(img, boxes, img.shape[:2], hyp, rng, out=out, then=flip)
            classes, boxes = classes[keep], boxes[keep]
        img = augment_hsv_into_new(img, hyp, rng, scratch=self._buffer("hsv", (*img.shape[:2], 3)))
        return img, classes, boxes.reshape(-1, 4), None

    def _mosaic(self, index: int, rng: np.random.Generator, slot: str, then: np.ndarray | None = None
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Mosaic of this image and three random others, warped to img_size square (into the
        reused 4-channel buffers of `slot`; `then` a matrix applied after the random warp).
        Draws as YOLOv5's `load_mosaic`: centre, the three others, then `random_perspective`;
        only the part of the canvas the warp reads is composed."""
        size = self.img_size
        centre = mosaic_centre(size, rng)
        indices = [index, *rng.integers(len(self), size=3).tolist()]
        rng.shuffle(indices)
        loaded = [self._load(i) for i in indices]
        matrix, scale = perspective_matrix((2 * size, 2 * size), (size, size), self.hyp, rng)
        if then is not None:
            matrix = then @ matrix
        x0, y0, x1, y1 = source_region(matrix, (size, size), (2 * size, 2 * size))
        canvas, before = mosaic4([im for im, _, _ in loaded], [b for _, _, b in loaded], size, centre,
                                 region=(x0, y0, x1, y1), out=self._buffer(slot, (2 * size, 2 * size, 4)))
        img = warp_image(canvas, shifted_source(matrix, x0, y0), (size, size),
                         perspective=bool(self.hyp.perspective), out=self._buffer(f"{slot}-warp", (size, size, 4)))
        classes = np.concatenate([c for _, c, _ in loaded])
        if len(before) == 0:
            return img, classes, before
        warped = warp_boxes(before, matrix, (size, size))
        keep = box_candidates(before, warped, area_gain=scale * scale)
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
