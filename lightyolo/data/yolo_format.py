"""Reader for YOLO-format detection folders (the layout of YOLOv5's datasets, e.g. coco128).

An images folder and a labels folder pair files by stem: `images/x.jpg` <-> `labels/x.txt`,
one `class cx cy w h` line per box, coordinates normalised to 0..1. The reader turns a split
into `ImageRecord`s and reports every defect it skips (nothing is dropped silently): on the
shared coco128 it yields 128 records and 929 boxes, 2 images without a label file
(000000000250, 000000000508) and 2 label files without an image (000000000656.txt,
000000000659.txt), as the dataset's README states.

Image sizes are read from the file header, with the EXIF orientation applied (a 90-degree
orientation swaps width and height), matching what `load_image` decodes and what OpenCV's
`imread` returns for YOLOv5.
"""

from __future__ import annotations

import logging
from collections import Counter
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from lightyolo.data.records import ImageRecord

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp"})
# Coordinates this far outside 0..1 are clipped; further out the line is malformed.
COORD_TOLERANCE = 0.01
# EXIF orientations (5..8) that rotate the image by 90 degrees.
_TRANSPOSING_ORIENTATIONS = frozenset({5, 6, 7, 8})
_EXIF_ORIENTATION = 0x0112

# Stable issue keys (DatasetSpec.issues, run logs).
CORRUPT_IMAGE = "corrupt_image"
MALFORMED_LABEL_LINE = "malformed_label_line"
DUPLICATE_LABEL_LINE = "duplicate_label_line"
ORPHAN_LABEL = "orphan_label"
MISSING_LABEL_FILE = "missing_label_file"  # kept as a background image
EMPTY_LABEL_FILE = "empty_label_file"  # kept as a background image


def oriented_size(path: Path) -> tuple[int, int]:
    """(width, height) of an image as displayed, from its header; raises on an unreadable file.

    Only the header is parsed (fast on big datasets); a file whose pixel data is truncated
    fails later, when it is decoded.
    """
    with Image.open(path) as im:
        width, height = im.size
        transposed = exif_transposes(im)
    return (height, width) if transposed else (width, height)


def exif_transposes(im: Image.Image) -> bool:
    """True when the image's EXIF orientation turns it by 90 degrees for display."""
    return im.getexif().get(_EXIF_ORIENTATION) in _TRANSPOSING_ORIENTATIONS


def parse_label_file(path: Path, nc: int, issues: Counter) -> tuple[np.ndarray, np.ndarray]:
    """Valid (classes (n,), boxes (n, 4)) of one label file; bad lines are logged and counted.

    An empty or whitespace-only file is a background image (counted as empty_label_file).
    """
    classes: list[int] = []
    boxes: list[tuple[float, ...]] = []
    seen: set[tuple[float, ...]] = set()
    text = path.read_text(encoding="utf-8", errors="replace")
    if not text.strip():
        issues[EMPTY_LABEL_FILE] += 1
    for line_no, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        problem, row = _parse_label_line(line, nc)
        if problem:
            log.warning("%s:%d: %s; line skipped: %r", path, line_no, problem, line.strip())
            issues[MALFORMED_LABEL_LINE] += 1
            continue
        if row in seen:
            log.warning("%s:%d: duplicate label line dropped", path, line_no)
            issues[DUPLICATE_LABEL_LINE] += 1
            continue
        seen.add(row)
        classes.append(int(row[0]))
        boxes.append(row[1:])
    cls_array = np.asarray(classes, dtype=np.int64)
    box_array = np.clip(np.asarray(boxes, dtype=np.float32).reshape(-1, 4), 0.0, 1.0)
    return cls_array, box_array


def _parse_label_line(line: str, nc: int) -> tuple[str, tuple[float, ...]]:
    """('', values) for a valid `class cx cy w h` line, else (what is wrong, ())."""
    fields = line.split()
    if len(fields) != 5:
        return f"expected 5 fields 'class cx cy w h', got {len(fields)}", ()
    try:
        values = tuple(float(f) for f in fields)
    except ValueError:
        return "non-numeric field", ()
    cls = values[0]
    if not cls.is_integer() or not 0 <= cls < nc:
        return f"class {fields[0]} outside 0..{nc - 1}", ()
    cx, cy, w, h = values[1:]
    if not all(-COORD_TOLERANCE <= v <= 1 + COORD_TOLERANCE for v in (cx, cy, w, h)):
        return "coordinate outside 0..1", ()
    if w <= 0 or h <= 0:
        return "non-positive width or height", ()
    return "", values


def read_yolo_split(images_dir: Path, labels_dir: Path, nc: int) -> tuple[list[ImageRecord], Counter]:
    """Records of one split (sorted by file name) and the Counter of skipped/reported issues.

    `image_id` is int(stem) when every stem is a unique integer (COCO's file names), else the
    index among the sorted image files (a skipped corrupt file keeps its index, so the ids of
    the others do not shift).
    """
    images_dir, labels_dir = Path(images_dir), Path(labels_dir)
    if not images_dir.is_dir():
        raise FileNotFoundError(f"{images_dir}: images directory not found")
    issues: Counter = Counter()
    image_paths = sorted(p for p in images_dir.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    label_paths = sorted(labels_dir.glob("*.txt")) if labels_dir.is_dir() else []
    if not labels_dir.is_dir():
        log.warning("%s: labels directory not found; every image is a background", labels_dir)

    image_stems = {p.stem for p in image_paths}
    for orphan in (p for p in label_paths if p.stem not in image_stems):
        log.warning("%s: label file without an image (orphan_label), skipped", orphan)
        issues[ORPHAN_LABEL] += 1

    image_ids = _image_ids([p.stem for p in image_paths])
    records: list[ImageRecord] = []
    for image_id, image_path in zip(image_ids, image_paths):
        try:
            width, height = oriented_size(image_path)
        except (UnidentifiedImageError, OSError, SyntaxError) as err:
            log.warning("%s: corrupt or unreadable image (%s), skipped", image_path, err)
            issues[CORRUPT_IMAGE] += 1
            continue
        label_path = labels_dir / f"{image_path.stem}.txt"
        if label_path.is_file():
            classes, boxes = parse_label_file(label_path, nc, issues)
        else:
            log.warning("%s: no label file %s, kept as a background image", image_path, label_path.name)
            issues[MISSING_LABEL_FILE] += 1
            classes, boxes = np.zeros(0, dtype=np.int64), np.zeros((0, 4), dtype=np.float32)
        records.append(ImageRecord(image_id, image_path, width, height, classes, boxes))
    return records, issues


def _image_ids(stems: list[str]) -> list[int]:
    if stems and all(s.isdigit() for s in stems):
        numeric = [int(s) for s in stems]
        if len(set(numeric)) == len(numeric):
            return numeric
    return list(range(len(stems)))
