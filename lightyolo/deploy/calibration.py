"""INT8 calibration sets: N images of the cell's own TRAINING split, never val or test.

The images are drawn without replacement by a seeded generator (all of them when the split
has fewer than N), resized and letterboxed into the export's input shape exactly as the
evaluation does (`DetectionDataset`, augment off: long side to `img`, grey padding), RGB in
[0, 1]. What was used is recorded with every INT8
figure: dataset, split, count (asked and used), seed, and a SHA-256 of the ordered file list.
"""

from __future__ import annotations

import hashlib
from typing import Any

import numpy as np
from hydra.errors import InstantiationException
from hydra.utils import instantiate
from omegaconf import DictConfig

from lightyolo.data.dataset import DetectionDataset
from lightyolo.data.records import DatasetSpec, ImageRecord
from lightyolo.deploy.runtime import Calibration

DEFAULT_IMAGES = 300  # as Ultralytics' INT8 export uses
SPLIT = "train"


def read_dataset_spec(config: DictConfig, source: str) -> DatasetSpec:
    """The run's `dataset` node instantiated; ValueError (one line, naming `source`) if it fails."""
    if "dataset" not in config:
        raise ValueError(f"{source}: config has no 'dataset' node")
    try:
        return instantiate(config.dataset)
    except InstantiationException as exc:
        raise ValueError(f"{source}: cannot read the dataset: {exc.__cause__ or exc}") from None


def files_digest(records: list[ImageRecord]) -> str:
    return hashlib.sha256("\n".join(str(r.path) for r in records).encode()).hexdigest()


def training_calibration(
    spec: DatasetSpec, img: int, images: int = DEFAULT_IMAGES, seed: int = 0, shape: tuple[int, int] | None = None,
) -> Calibration:
    """The calibration set of the module docstring from `spec`'s training split, at the input
    `shape` (H, W) (default img × img) with the long side resized to `img`."""
    shape = shape or (img, img)
    if images < 1:
        raise ValueError(f"calibration_images={images}: expected >= 1")
    if not spec.train:
        raise ValueError(f"dataset {spec.name!r} has no training images to calibrate INT8 on")
    order = np.random.default_rng(seed).permutation(len(spec.train))[:images]
    chosen = [spec.train[i] for i in sorted(order)]
    dataset = DetectionDataset(chosen, img, augment=False, rect=False)
    # the evaluation's own resize and letterbox, into this input shape
    letterboxed = (dataset._letterboxed(i, shape, scaleup=False)[0] for i in range(len(dataset)))
    batches = [np.ascontiguousarray(image.transpose(2, 0, 1)[None], dtype=np.float32) / 255 for image in letterboxed]
    description: dict[str, Any] = {
        "dataset": spec.name,
        "split": SPLIT,
        "images_asked": images,
        "images_used": len(chosen),
        "split_size": len(spec.train),
        "seed": seed,
        "files_sha256": files_digest(chosen),
        # A dataset whose val (or test) split reuses training files (coco128 does) calibrates
        # on evaluation images all the same: counted here so that the figure says so.
        "also_in_val": len({str(r.path) for r in chosen} & {str(r.path) for r in spec.val}),
        "also_in_test": len({str(r.path) for r in chosen} & {str(r.path) for r in spec.test or []}),
        "preprocessing": f"long side {img}, letterboxed into {shape[0]}x{shape[1]} as the evaluation, RGB/255",
    }
    return Calibration(batches, tuple(str(r.path) for r in chosen), description)
