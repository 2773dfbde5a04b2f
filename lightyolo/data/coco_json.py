"""Reader for COCO-format detection datasets: an image folder plus an `instances_*.json`.

The json format is COCO's (cocodataset.org/#format-data, "Object Detection"): `images`
(id, file_name, width, height), `annotations` (id, image_id, category_id, bbox as x, y, w, h
in pixels, area, iscrowd, segmentation) and `categories` (id, name). COCO 2017's own files
use category ids 1..90 with gaps; on the shared coco128 json this reader yields 128 records,
80 classes and 939 annotations, 10 of them crowd regions, so 929 training boxes
(shared/data/coco128/README.md).

What a run needs from the json:

- training records: one `ImageRecord` per image (sorted by file name, as YOLOv5 lists image
  files), boxes normalised to cx, cy, w, h and clipped to the image, crowd regions left out,
  images without annotations kept as backgrounds; `image_id` is the json's id and
  width/height are the json's;
- the contiguous class index 0..nc-1 <-> json category id map (categories sorted by id);
- the evaluation ground truth: the json's own images, annotations (crowd regions and
  segmentation areas included, which decide COCO's ignore regions and small/medium/large)
  and categories, without `segmentation` itself (box evaluation never reads it, and it is
  most of the file's size).

Scale (COCO 2017 train: 118k images, 860k annotations, ~450 MB): the json is parsed once,
dropping segmentations while it is decoded, annotations are indexed in one pass, and the
result is cached as compact numpy arrays in `cache_dir` keyed by the json's path, size and
mtime; later loads read the cache and never decode the json (figures in
benchmarks/coco_json_scale.py).

Defects are reported and skipped, never silently lost: each gets a logging warning naming
the json and the image id / annotation id / file name, and is counted under a stable key
(the Counter returned). Every image file is checked once (`lightyolo.data.image_check`:
unreadable, truncated, zero-byte, ...; results cached in `cache_dir/image_check` by file size
and mtime), and its EXIF-oriented size must be the json's. An image whose file is missing, bad, or of
another size is left out of the training records *and* of the ground truth (with its
annotations), so evaluation never counts objects on an image nobody could predict. A file
that is not a COCO detection json raises a one-line error.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import tempfile
from collections import Counter
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np

from lightyolo.data.image_check import check_images
from lightyolo.data.records import ImageRecord

log = logging.getLogger(__name__)

DEFAULT_CACHE_DIR = Path("~/.cache/lightyolo/coco_json")
# Bump when ParsedCocoJson or the parsing rules change: old cache files are then ignored.
CACHE_VERSION = 1
REQUIRED_KEYS = ("images", "annotations", "categories")

# Stable issue keys (DatasetSpec.issues, run logs).
MISSING_IMAGE_FILE = "missing_image_file"
MALFORMED_IMAGE = "malformed_image"
DUPLICATE_IMAGE_ID = "duplicate_image_id"
UNKNOWN_IMAGE_ID = "unknown_image_id"
UNKNOWN_CATEGORY_ID = "unknown_category_id"
MALFORMED_BBOX = "malformed_bbox"
DEGENERATE_BBOX = "degenerate_bbox"  # no area left inside the image: kept in the GT only
RENUMBERED_ANNOTATION_IDS = "renumbered_annotation_ids"
IMAGE_SIZE_MISMATCH = "image_size_mismatch"


@dataclass(frozen=True)
class ParsedCocoJson:
    """The usable content of a COCO json as flat arrays (what the cache file holds).

    Images in json order; annotations are the valid ones, `ann_image` indexing `image_ids`
    and `ann_class` the contiguous class (categories sorted by id). `messages` are the
    warnings the parse logged, replayed when the cache is read.
    """

    image_ids: np.ndarray  # (n_images,) int64
    file_names: np.ndarray  # (n_images,) str
    widths: np.ndarray  # (n_images,) int64
    heights: np.ndarray  # (n_images,) int64
    ann_ids: np.ndarray  # (n_ann,) int64, unique and >= 1
    ann_image: np.ndarray  # (n_ann,) int64
    ann_class: np.ndarray  # (n_ann,) int64
    ann_bbox: np.ndarray  # (n_ann, 4) float64, the json's x, y, w, h in pixels
    ann_area: np.ndarray  # (n_ann,) float64
    ann_iscrowd: np.ndarray  # (n_ann,) bool
    category_ids: np.ndarray  # (nc,) int64, sorted
    category_names: np.ndarray  # (nc,) str
    supercategories: np.ndarray  # (nc,) str
    issue_keys: np.ndarray  # str
    issue_counts: np.ndarray  # int64
    messages: np.ndarray  # str

    def issues(self) -> Counter:
        return Counter(dict(zip(self.issue_keys.tolist(), self.issue_counts.tolist())))


def read_coco_json(
    images_dir: Path, annotations: Path, *, cache_dir: Path | None = DEFAULT_CACHE_DIR,
    ground_truth: bool = True,
) -> tuple[list[ImageRecord], list[str], list[int], dict | None, Counter]:
    """(records, class names, category ids, COCO ground truth, issues) of one split.

    `category_ids[i]` is the json id of class i. The ground truth is the json's own content
    for the images kept (None when `ground_truth=False`, which saves building ~1M dicts for a
    training split). `cache_dir=None` parses the json every time.
    """
    images_dir, annotations = Path(images_dir), Path(annotations)
    if not images_dir.is_dir():
        raise FileNotFoundError(f"{images_dir}: images directory not found (for {annotations})")
    parsed = load_coco_json(annotations, cache_dir)
    issues = parsed.issues()
    kept = _images_with_files(images_dir, parsed.file_names)
    for index in np.flatnonzero(~kept).tolist():
        log.warning("%s: image %d: file %s not found; image and its annotations left out",
                    annotations, parsed.image_ids[index], images_dir / str(parsed.file_names[index]))
    issues[MISSING_IMAGE_FILE] += int((~kept).sum())
    kept = _usable_images(images_dir, annotations, parsed, kept, cache_dir, issues)

    boxes, trainable = _training_boxes(parsed, annotations, issues)
    trainable &= kept[parsed.ann_image]
    records = _records(parsed, images_dir, kept, boxes, trainable)
    names = parsed.category_names.tolist()
    category_ids = parsed.category_ids.tolist()
    gt = _ground_truth(parsed, kept) if ground_truth else None
    return records, names, category_ids, gt, +issues


def restrict_ground_truth(gt: dict, image_ids: set[int]) -> dict:
    """`gt` with only the given images and their annotations (categories unchanged)."""
    return {
        "images": [image for image in gt["images"] if image["id"] in image_ids],
        "annotations": [a for a in gt["annotations"] if a["image_id"] in image_ids],
        "categories": gt["categories"],
    }


def load_coco_json(path: Path, cache_dir: Path | None = DEFAULT_CACHE_DIR) -> ParsedCocoJson:
    """The parsed json, from the cache when its path, size and mtime match, else parsed (and
    cached). Warnings of the parse are logged again on a cache hit."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: COCO annotation json not found")
    cache_file = _cache_file(path, Path(cache_dir).expanduser()) if cache_dir is not None else None
    if cache_file is not None and cache_file.is_file():
        try:
            with np.load(cache_file, allow_pickle=False) as arrays:
                parsed = ParsedCocoJson(**{f.name: arrays[f.name] for f in fields(ParsedCocoJson)})
        except (OSError, ValueError, KeyError) as err:
            log.warning("%s: unreadable cache file (%s); parsing the json again", cache_file, err)
        else:
            for message in parsed.messages.tolist():
                log.warning(message)
            log.info("%s: read from cache %s", path, cache_file)
            return parsed
    parsed = parse_coco_json(path)
    if cache_file is not None:
        _write_cache(cache_file, parsed)
    return parsed


def parse_coco_json(path: Path) -> ParsedCocoJson:
    """Decode and index a COCO json in one pass over its images and annotations."""
    path = Path(path)
    try:
        with path.open("rb") as handle:
            # dropping segmentations while decoding keeps memory at the size of the boxes
            content = json.load(handle, object_pairs_hook=_without_segmentation)
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(f"{path}: not valid JSON ({err})") from None
    if not isinstance(content, dict):
        raise ValueError(f"{path}: not a COCO detection json: top level is a {type(content).__name__}, "
                         f"expected an object with keys {', '.join(REQUIRED_KEYS)}")
    for key in REQUIRED_KEYS:
        if not isinstance(content.get(key), list):
            problem = "missing key" if key not in content else "not a list:"
            raise ValueError(f"{path}: not a COCO detection json: {problem} '{key}' "
                             f"(expected lists {', '.join(REQUIRED_KEYS)})")
    report = _Report(path)
    category_ids, category_names, supercategories = _categories(path, content["categories"])
    class_of = {category_id: index for index, category_id in enumerate(category_ids)}
    image_ids, file_names, widths, heights = _images(content["images"], report)
    image_index = {image_id: index for index, image_id in enumerate(image_ids)}
    annotations = _annotations(content["annotations"], image_index, class_of, report)
    return ParsedCocoJson(
        image_ids=np.asarray(image_ids, dtype=np.int64),
        file_names=np.asarray(file_names, dtype=np.str_),
        widths=np.asarray(widths, dtype=np.int64),
        heights=np.asarray(heights, dtype=np.int64),
        **annotations,
        category_ids=np.asarray(category_ids, dtype=np.int64),
        category_names=np.asarray(category_names, dtype=np.str_),
        supercategories=np.asarray(supercategories, dtype=np.str_),
        issue_keys=np.asarray(list(report.issues), dtype=np.str_),
        issue_counts=np.asarray(list(report.issues.values()), dtype=np.int64),
        messages=np.asarray(report.messages, dtype=np.str_),
    )


class _Report:
    """Logs a defect of the json, counts it, and keeps the message for the cache."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.issues: Counter = Counter()
        self.messages: list[str] = []

    def __call__(self, key: str, what: str) -> None:
        message = f"{self.path}: {what} ({key})"
        log.warning(message)
        self.issues[key] += 1
        self.messages.append(message)


def _without_segmentation(pairs: list[tuple[str, Any]]) -> dict:
    return {key: value for key, value in pairs if key != "segmentation"}


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _categories(path: Path, categories: list) -> tuple[list[int], list[str], list[str]]:
    """Category ids (sorted), names and supercategories; a bad category is fatal (it would
    shift every class index after it)."""
    if not categories:
        raise ValueError(f"{path}: 'categories' is empty; expected at least one {{id, name}}")
    by_id: dict[int, dict] = {}
    for category in categories:
        if not isinstance(category, dict) or not _is_int(category.get("id")) or not isinstance(category.get("name"), str):
            raise ValueError(f"{path}: category {category!r}: expected an object with an integer 'id' and a string 'name'")
        if category["id"] in by_id:
            raise ValueError(f"{path}: category id {category['id']} appears twice")
        by_id[category["id"]] = category
    ids = sorted(by_id)
    return ids, [by_id[i]["name"] for i in ids], [str(by_id[i].get("supercategory", "")) for i in ids]


def _images(images: list, report: _Report) -> tuple[list[int], list[str], list[int], list[int]]:
    ids: list[int] = []
    file_names: list[str] = []
    widths: list[int] = []
    heights: list[int] = []
    seen: set[int] = set()
    for image in images:
        if not (isinstance(image, dict) and _is_int(image.get("id")) and isinstance(image.get("file_name"), str)
                and _is_int(image.get("width")) and _is_int(image.get("height"))
                and image["width"] > 0 and image["height"] > 0):
            shown = image.get("id", image) if isinstance(image, dict) else image
            report(MALFORMED_IMAGE, f"image {shown!r}: expected integer id, string file_name, positive integer width and height; skipped")
            continue
        if image["id"] in seen:
            report(DUPLICATE_IMAGE_ID, f"image id {image['id']} ({image['file_name']}) appears again; skipped")
            continue
        seen.add(image["id"])
        ids.append(image["id"])
        file_names.append(image["file_name"])
        widths.append(image["width"])
        heights.append(image["height"])
    return ids, file_names, widths, heights


def _annotations(annotations: list, image_index: dict[int, int], class_of: dict[int, int],
                 report: _Report) -> dict[str, np.ndarray]:
    """The valid annotations as arrays (the ParsedCocoJson `ann_*` fields)."""
    ids: list[Any] = []
    images: list[int] = []
    classes: list[int] = []
    bboxes: list[list[float]] = []
    areas: list[float] = []
    crowd: list[bool] = []
    for annotation in annotations:
        if not isinstance(annotation, dict):
            report(MALFORMED_BBOX, f"annotation {annotation!r}: not an object; skipped")
            continue
        ann_id = annotation.get("id")
        image_id, category_id = annotation.get("image_id"), annotation.get("category_id")
        image = image_index.get(image_id) if _is_int(image_id) else None
        if image is None:
            report(UNKNOWN_IMAGE_ID, f"annotation {ann_id}: image_id {image_id!r} is not in 'images'; skipped")
            continue
        cls = class_of.get(category_id) if _is_int(category_id) else None
        if cls is None:
            report(UNKNOWN_CATEGORY_ID, f"annotation {ann_id} (image {annotation['image_id']}): "
                                        f"category_id {category_id!r} is not in 'categories'; skipped")
            continue
        bbox = annotation.get("bbox")
        if not _valid_bbox(bbox):
            report(MALFORMED_BBOX, f"annotation {ann_id} (image {annotation['image_id']}): bbox {bbox!r} "
                                   f"is not 4 finite numbers x, y, w, h with w, h > 0; skipped")
            continue
        area = annotation.get("area")
        ids.append(ann_id)
        images.append(image)
        classes.append(cls)
        bboxes.append(bbox)
        # box-only jsons often lack area: the box area is what COCO's size buckets need then
        areas.append(float(area) if isinstance(area, (int, float)) and math.isfinite(area) else bbox[2] * bbox[3])
        crowd.append(bool(annotation.get("iscrowd", 0)))
    if not all(_is_int(i) and i >= 1 for i in ids) or len(set(ids)) != len(ids):
        # pycocotools needs unique ids >= 1 (0 reads as "unmatched")
        report(RENUMBERED_ANNOTATION_IDS, "annotation ids are not unique integers >= 1; renumbered 1..n for evaluation")
        ids = list(range(1, len(ids) + 1))
    return {
        "ann_ids": np.asarray(ids, dtype=np.int64),
        "ann_image": np.asarray(images, dtype=np.int64),
        "ann_class": np.asarray(classes, dtype=np.int64),
        "ann_bbox": np.asarray(bboxes, dtype=np.float64).reshape(-1, 4),
        "ann_area": np.asarray(areas, dtype=np.float64),
        "ann_iscrowd": np.asarray(crowd, dtype=bool),
    }


def _valid_bbox(bbox: Any) -> bool:
    if not isinstance(bbox, list) or len(bbox) != 4:
        return False
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in bbox):
        return False
    return math.isfinite(sum(bbox)) and bbox[2] > 0 and bbox[3] > 0


def _images_with_files(images_dir: Path, file_names: np.ndarray) -> np.ndarray:
    """Which images have a file: one directory listing, a stat only for nested file names."""
    listed = {entry.name for entry in os.scandir(images_dir)}
    return np.fromiter(
        (name in listed if "/" not in name else (images_dir / name).is_file() for name in file_names.tolist()),
        dtype=bool, count=len(file_names),
    )


def _usable_images(images_dir: Path, annotations: Path, parsed: ParsedCocoJson, kept: np.ndarray,
                   cache_dir: Path | None, issues: Counter) -> np.ndarray:
    """`kept` minus the images that fail the file check or whose EXIF-oriented size is not the
    json's (their boxes would not match the decoded pixels); each is logged and counted."""
    indices = np.flatnonzero(kept).tolist()
    paths = [images_dir / str(parsed.file_names[index]) for index in indices]
    checks = check_images(paths, Path(cache_dir).expanduser() / "image_check" if cache_dir is not None else None)
    usable = kept.copy()
    for index, path, check in zip(indices, paths, checks):
        json_size = (int(parsed.widths[index]), int(parsed.heights[index]))
        if not check.ok:
            log.warning("%s: image %d: %s: %s; image and its annotations left out (%s)", annotations,
                        parsed.image_ids[index], path, check.reason, check.key)
            issues[check.key] += 1
        elif (check.width, check.height) != json_size:
            log.warning("%s: image %d: %s is %dx%d as displayed (EXIF orientation applied), the json says "
                        "%dx%d; image and its annotations left out (%s)", annotations, parsed.image_ids[index],
                        path, check.width, check.height, *json_size, IMAGE_SIZE_MISMATCH)
            issues[IMAGE_SIZE_MISMATCH] += 1
        else:
            continue
        usable[index] = False
    return usable


def _training_boxes(parsed: ParsedCocoJson, annotations: Path, issues: Counter) -> tuple[np.ndarray, np.ndarray]:
    """Normalised (cx, cy, w, h) clipped to the image, and which annotations train: not
    crowd, and with area left after clipping (degenerate ones are reported)."""
    width = parsed.widths[parsed.ann_image].astype(np.float64)
    height = parsed.heights[parsed.ann_image].astype(np.float64)
    x, y, w, h = parsed.ann_bbox.T
    x1, y1 = np.clip(x, 0, width), np.clip(y, 0, height)
    x2, y2 = np.clip(x + w, 0, width), np.clip(y + h, 0, height)
    boxes = np.stack([(x1 + x2) / 2 / width, (y1 + y2) / 2 / height, (x2 - x1) / width, (y2 - y1) / height], axis=1)
    degenerate = (x2 <= x1) | (y2 <= y1)
    for index in np.flatnonzero(degenerate).tolist():
        log.warning("%s: annotation %d (image %d): bbox %s has no area inside the %dx%d image (%s); "
                    "left out of training, kept in the evaluation GT", annotations, parsed.ann_ids[index],
                    parsed.image_ids[parsed.ann_image[index]], parsed.ann_bbox[index].tolist(),
                    width[index], height[index], DEGENERATE_BBOX)
    issues[DEGENERATE_BBOX] += int(degenerate.sum())
    return boxes.astype(np.float32), ~parsed.ann_iscrowd & ~degenerate


def _records(parsed: ParsedCocoJson, images_dir: Path, kept: np.ndarray, boxes: np.ndarray,
             trainable: np.ndarray) -> list[ImageRecord]:
    """One record per kept image, sorted by file name; boxes grouped by image in one sort."""
    selected = np.flatnonzero(trainable)
    selected = selected[np.argsort(parsed.ann_image[selected], kind="stable")]
    counts = np.bincount(parsed.ann_image[selected], minlength=len(parsed.image_ids))
    starts = np.concatenate([[0], np.cumsum(counts)])
    classes, boxes = parsed.ann_class[selected], boxes[selected]
    file_names = parsed.file_names.tolist()
    records = []
    for index in sorted(np.flatnonzero(kept).tolist(), key=file_names.__getitem__):
        begin, end = starts[index], starts[index + 1]
        records.append(ImageRecord(
            image_id=int(parsed.image_ids[index]), path=images_dir / file_names[index],
            width=int(parsed.widths[index]), height=int(parsed.heights[index]),
            classes=classes[begin:end], boxes=boxes[begin:end],
        ))
    return records


def _ground_truth(parsed: ParsedCocoJson, kept: np.ndarray) -> dict:
    """The json's images, annotations (all valid ones, crowd included) and categories for
    the kept images, without segmentations."""
    images = [
        {"id": image_id, "file_name": file_name, "width": width, "height": height}
        for image_id, file_name, width, height, keep in zip(
            parsed.image_ids.tolist(), parsed.file_names.tolist(), parsed.widths.tolist(),
            parsed.heights.tolist(), kept.tolist()) if keep
    ]
    in_kept = kept[parsed.ann_image]
    image_ids = parsed.image_ids[parsed.ann_image[in_kept]].tolist()
    category_ids = parsed.category_ids[parsed.ann_class[in_kept]].tolist()
    annotations = [
        {"id": ann_id, "image_id": image_id, "category_id": category_id, "bbox": bbox, "area": area,
         "iscrowd": int(crowd)}
        for ann_id, image_id, category_id, bbox, area, crowd in zip(
            parsed.ann_ids[in_kept].tolist(), image_ids, category_ids, parsed.ann_bbox[in_kept].tolist(),
            parsed.ann_area[in_kept].tolist(), parsed.ann_iscrowd[in_kept].tolist())
    ]
    categories = [
        {"id": category_id, "name": name, "supercategory": supercategory}
        for category_id, name, supercategory in zip(
            parsed.category_ids.tolist(), parsed.category_names.tolist(), parsed.supercategories.tolist())
    ]
    return {"images": images, "annotations": annotations, "categories": categories}


def _cache_file(path: Path, cache_dir: Path) -> Path:
    stat = path.stat()
    key = f"{path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}|v{CACHE_VERSION}"
    return cache_dir / f"{path.stem}-{hashlib.sha256(key.encode()).hexdigest()[:16]}.npz"


def _write_cache(cache_file: Path, parsed: ParsedCocoJson) -> None:
    """Write atomically (parallel jobs may read it while another writes it); a cache that
    cannot be written only costs the next load a parse."""
    partial: str | None = None
    try:
        cache_file.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=cache_file.parent, suffix=".npz.tmp", delete=False) as handle:
            partial = handle.name
            np.savez(handle, **{f.name: getattr(parsed, f.name) for f in fields(ParsedCocoJson)})
        os.replace(partial, cache_file)
    except OSError as err:
        if partial is not None:
            Path(partial).unlink(missing_ok=True)
        log.warning("%s: could not write the parse cache (%s); the json will be parsed again next time", cache_file, err)
