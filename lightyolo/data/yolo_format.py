"""Reader for YOLO-format detection folders (the layout of YOLOv5's datasets, e.g. coco128).

An image and its label file pair by YOLOv5's rule (`img2label_paths`): the last `/images/` of
the image path becomes `/labels/` and the extension `.txt` — for a folder pair,
`images/x.jpg` <-> `labels/x.txt`. One `class cx cy w h` line per box, coordinates
normalised to 0..1; a polygon row `class x1 y1 x2 y2 x3 y3 ...` (YOLOv5's segment labels) is
converted to its box (YOLOv5's `segments2boxes`). The reader turns a split into
`ImageRecord`s and reports every defect it skips (nothing is dropped silently): on the shared
coco128 it yields 128 records and 929 boxes, 2 images without a label file (000000000250,
000000000508) and 2 label files without an image (000000000656.txt, 000000000659.txt), as
the dataset's README states.

Every image is checked once when the split is indexed (`lightyolo.data.image_check`): a
bad file (unreadable, truncated, zero-byte, too small) is logged with its path and reason,
counted, and left out of the records — so of training and of the evaluation's ground truth
alike. Sizes are the EXIF-oriented ones, matching what OpenCV's `imread` returns.
"""

from __future__ import annotations

import logging
import os
from collections import Counter
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from lightyolo.data.image_check import check_images, exif_transposes, oriented_size
from lightyolo.data.records import ImageRecord

__all__ = ["exif_transposes", "oriented_size", "parse_label_file", "read_yolo_images", "read_yolo_split",
           "label_path_for"]  # exif_transposes / oriented_size: re-exported for their older importers

log = logging.getLogger(__name__)

# YOLOv5's IMG_FORMATS that OpenCV decodes (the content decides the format; see image_check).
IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".mpo"})
# Coordinates this far outside 0..1 are clipped; further out the line is malformed.
COORD_TOLERANCE = 0.01
MIN_POLYGON_POINTS = 3

# Stable issue keys (DatasetSpec.issues, run logs); image_check adds the bad-image keys.
MALFORMED_LABEL_LINE = "malformed_label_line"
DUPLICATE_LABEL_LINE = "duplicate_label_line"
POLYGON_LABEL_LINE = "polygon_label_line"  # converted to its box, kept
ORPHAN_LABEL = "orphan_label"
MISSING_LABEL_FILE = "missing_label_file"  # kept as a background image
EMPTY_LABEL_FILE = "empty_label_file"  # kept as a background image


def label_path_for(image_path: Path) -> Path:
    """YOLOv5's `img2label_paths`: the last `/images/` → `/labels/`, the extension → `.txt`."""
    text = str(image_path)
    marker = f"{os.sep}images{os.sep}"
    if marker in text:
        head, tail = text.rsplit(marker, 1)
        text = f"{head}{os.sep}labels{os.sep}{tail}"
    return Path(text).with_suffix(".txt")


def parse_label_file(path: Path, nc: int, issues: Counter) -> tuple[np.ndarray, np.ndarray]:
    """Valid (classes (n,), boxes (n, 4)) of one label file; bad lines are logged and counted.

    An empty or whitespace-only file is a background image (counted as empty_label_file).
    Duplicate rows are dropped with a warning; polygon rows become their boxes.
    """
    classes: list[int] = []
    boxes: list[tuple[float, ...]] = []
    seen: set[tuple[float, ...]] = set()
    polygon_lines: list[int] = []
    text = path.read_text(encoding="utf-8", errors="replace")
    if not text.strip():
        issues[EMPTY_LABEL_FILE] += 1
    for line_no, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        problem, row, polygon = _parse_label_line(line, nc)
        if problem:
            log.warning("%s:%d: %s; line skipped: %r", path, line_no, problem, _shortened(line))
            issues[MALFORMED_LABEL_LINE] += 1
            continue
        if polygon:
            polygon_lines.append(line_no)
        if row in seen:
            log.warning("%s:%d: duplicate label line dropped", path, line_no)
            issues[DUPLICATE_LABEL_LINE] += 1
            continue
        seen.add(row)
        classes.append(int(row[0]))
        boxes.append(row[1:])
    if polygon_lines:
        shown = ", ".join(map(str, polygon_lines[:10])) + (", ..." if len(polygon_lines) > 10 else "")
        log.warning("%s: %d polygon (segment) rows converted to their boxes (lines %s)",
                    path, len(polygon_lines), shown)
        issues[POLYGON_LABEL_LINE] += len(polygon_lines)
    cls_array = np.asarray(classes, dtype=np.int64)
    box_array = np.clip(np.asarray(boxes, dtype=np.float32).reshape(-1, 4), 0.0, 1.0)
    return cls_array, box_array


def _parse_label_line(line: str, nc: int) -> tuple[str, tuple[float, ...], bool]:
    """('', (class, cx, cy, w, h), is_polygon) for a valid line, else (what is wrong, (), False)."""
    fields = line.split()
    polygon = len(fields) > 5
    if polygon and (len(fields) % 2 == 0 or len(fields) < 1 + 2 * MIN_POLYGON_POINTS):
        return (f"expected 5 fields 'class cx cy w h' or a polygon 'class x1 y1 x2 y2 x3 y3 ...', "
                f"got {len(fields)}"), (), False
    if len(fields) < 5:
        return f"expected 5 fields 'class cx cy w h', got {len(fields)}", (), False
    try:
        values = [float(f) for f in fields]
    except ValueError:
        return "non-numeric field", (), False
    cls, coords = values[0], values[1:]
    if not cls.is_integer() or not 0 <= cls < nc:
        return f"class {fields[0]} outside 0..{nc - 1}", (), False
    if not all(-COORD_TOLERANCE <= v <= 1 + COORD_TOLERANCE for v in coords):
        return "coordinate outside 0..1", (), False
    if polygon:
        xs, ys = np.clip(coords[0::2], 0, 1), np.clip(coords[1::2], 0, 1)
        x1, x2, y1, y2 = float(xs.min()), float(xs.max()), float(ys.min()), float(ys.max())
        coords = [(x1 + x2) / 2, (y1 + y2) / 2, x2 - x1, y2 - y1]
    if coords[2] <= 0 or coords[3] <= 0:
        return "non-positive width or height", (), False
    return "", (cls, *coords), polygon


def _shortened(line: str, limit: int = 80) -> str:
    line = line.strip()
    return line if len(line) <= limit else line[:limit] + "..."


def read_yolo_split(images_dir: Path, labels_dir: Path, nc: int, *,
                    cache_dir: Path | None = None) -> tuple[list[ImageRecord], Counter]:
    """Records of one images/labels folder pair (sorted by file name) and the Counter of
    skipped/reported issues; label files without an image are reported as orphans.

    `image_id` as in `read_yolo_images`. `cache_dir` holds the image-check cache (None:
    check every image each time).
    """
    images_dir, labels_dir = Path(images_dir), Path(labels_dir)
    if not images_dir.is_dir():
        raise FileNotFoundError(f"{images_dir}: images directory not found")
    image_paths = sorted(p for p in images_dir.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not labels_dir.is_dir():
        log.warning("%s: labels directory not found; every image is a background", labels_dir)
    label_paths = [labels_dir / f"{p.stem}.txt" for p in image_paths]
    records, issues = read_yolo_images(image_paths, label_paths, nc, cache_dir=cache_dir)
    issues[ORPHAN_LABEL] += report_orphan_labels(labels_dir, label_paths)
    return records, +issues


def report_orphan_labels(labels_dir: Path, used: Iterable[Path], recursive: bool = False) -> int:
    """Log each label file of `labels_dir` that no image uses; their count."""
    if not labels_dir.is_dir():
        return 0
    used_set = {Path(p) for p in used}
    found = labels_dir.rglob("*.txt") if recursive else labels_dir.glob("*.txt")
    orphans = sorted(p for p in found if p not in used_set)
    for orphan in orphans:
        log.warning("%s: label file without an image (orphan_label), skipped", orphan)
    return len(orphans)


def read_yolo_images(image_paths: list[Path], label_paths: list[Path], nc: int, *,
                     cache_dir: Path | None = None) -> tuple[list[ImageRecord], Counter]:
    """Records of the given images (in the given order) with their label files.

    `image_id` is int(stem) when every stem is a unique integer (COCO's file names), else the
    image's index in `image_paths` (a left-out image keeps its index, so the ids of the others
    do not shift). Bad images are logged, counted and left out (see the module docstring);
    a missing label file makes a background image.
    """
    issues: Counter = Counter()
    image_ids = _image_ids([p.stem for p in image_paths])
    checks = check_images(list(image_paths), cache_dir)
    records: list[ImageRecord] = []
    for image_id, image_path, label_path, check in zip(image_ids, image_paths, label_paths, checks):
        if not check.ok:
            log.warning("%s: %s; image left out (%s)", image_path, check.reason, check.key)
            issues[check.key] += 1
            continue
        if label_path.is_file():
            classes, boxes = parse_label_file(label_path, nc, issues)
        else:
            log.warning("%s: no label file %s, kept as a background image", image_path, label_path)
            issues[MISSING_LABEL_FILE] += 1
            classes, boxes = np.zeros(0, dtype=np.int64), np.zeros((0, 4), dtype=np.float32)
        records.append(ImageRecord(image_id, image_path, check.width, check.height, classes, boxes))
    return records, issues


def _image_ids(stems: list[str]) -> list[int]:
    if stems and all(s.isdigit() for s in stems):
        numeric = [int(s) for s in stems]
        if len(set(numeric)) == len(numeric):
            return numeric
    return list(range(len(stems)))
