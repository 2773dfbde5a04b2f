"""Check image files once, when a split is indexed: usable or not, and the size as displayed.

The checks follow YOLOv5's `verify_image_label` (ultralytics/yolov5 v7.0,
utils/dataloaders.py): the header must parse (PIL), `verify()` must pass, the format must be
one the loaders decode, both sides must be at least 10 pixels, and a JPEG must end with the
end-of-image marker (FF D9) — PIL opens a truncated JPEG without complaint and fails only when
the pixels are decoded, so a JPEG without the marker is decoded once and left out when that
fails (bytes after the marker, as phones and web tools write, decode fine and are kept). A
zero-byte file is named as such. Whether a file is a JPEG is read from its first bytes, never
its suffix, and `truncation_problem` is the one decision that the loader
(`transforms.decode`) shares with this check; a BMP, WEBP or TIFF is decoded once by OpenCV
(the loader's decoder), which refuses some TIFFs PIL opens (32-bit or float samples): what
the index accepts, the loader reads. What is fine and says nothing: a PNG named .jpg (the
format is read from the content), greyscale / RGBA / CMYK / palette images (the loaders
convert to RGB). The size is the EXIF-oriented one (YOLOv5's `exif_size`; OpenCV's `imread`
applies the orientation, so pixels and normalised boxes agree).

Cost (coco128, 128 JPEGs, one core): ~0.15 ms of CPU per image (header, EXIF, 2-byte tail
read); a full decode only for a JPEG without its end marker. `check_images` caches the
results in `cache_dir`, one file per list of images, entries reused while a file's size and
mtime are unchanged (a stat per image on a warm start).
"""

from __future__ import annotations

import functools
import hashlib
import logging
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, UnidentifiedImageError

log = logging.getLogger(__name__)

# Bump when the checks change: older cache entries are then ignored.
CHECK_VERSION = 2
MIN_SIDE = 10  # YOLOv5 refuses images under 10 pixels a side
# PIL format names of the files the loaders decode (YOLOv5's IMG_FORMATS that OpenCV reads).
DECODABLE_FORMATS = frozenset({"JPEG", "MPO", "PNG", "BMP", "WEBP", "TIFF"})
_JPEG_FORMATS = frozenset({"JPEG", "MPO"})
# Formats whose every file PIL's checks pass OpenCV decodes too; the others are decoded once
# by OpenCV while indexing (they are rare in detection sets: BMP, WEBP, TIFF).
_OPENCV_CERTAIN = frozenset({"JPEG", "MPO", "PNG"})
_JPEG_START = b"\xff\xd8\xff"  # SOI marker, then the first segment's marker
_JPEG_END = b"\xff\xd9"
# EXIF orientations (5..8) that turn the image by 90 degrees for display.
_TRANSPOSING_ORIENTATIONS = frozenset({5, 6, 7, 8})
_EXIF_ORIENTATION = 0x0112

# Stable issue keys (DatasetSpec.issues, the run's data_issues tag).
EMPTY_IMAGE_FILE = "empty_image_file"
MISSING_IMAGE_FILE = "missing_image_file"
CORRUPT_IMAGE = "corrupt_image"
TRUNCATED_IMAGE = "truncated_image"
UNSUPPORTED_IMAGE_FORMAT = "unsupported_image_format"
IMAGE_TOO_SMALL = "image_too_small"


@dataclass(frozen=True)
class ImageCheck:
    """What indexing learnt about one file: the displayed (width, height), and for a file
    that cannot be used the issue key and the reason (both '' for a usable image)."""

    width: int
    height: int
    key: str = ""
    reason: str = ""

    @property
    def ok(self) -> bool:
        return not self.key


def exif_transposes(im: Image.Image) -> bool:
    """True when the image's EXIF orientation turns it by 90 degrees for display."""
    return im.getexif().get(_EXIF_ORIENTATION) in _TRANSPOSING_ORIENTATIONS


def oriented_size(path: Path) -> tuple[int, int]:
    """(width, height) of an image as displayed, from its header; raises on an unreadable file."""
    with Image.open(path) as im:
        width, height = im.size
        transposed = exif_transposes(im)
    return (height, width) if transposed else (width, height)


def check_image(path: Path) -> ImageCheck:
    """Check one file (see the module docstring); never raises for a bad file."""
    try:
        if os.path.getsize(path) == 0:
            return ImageCheck(0, 0, EMPTY_IMAGE_FILE, "empty file (0 bytes)")
        with Image.open(path) as im:
            width, height = im.size
            transposed = exif_transposes(im)
            image_format = im.format or "unknown"
        if image_format not in _JPEG_FORMATS:  # verify() checks PNG CRCs; for a JPEG it does nothing
            with Image.open(path) as im:
                im.verify()
    except FileNotFoundError:
        return ImageCheck(0, 0, MISSING_IMAGE_FILE, "file not found")
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, RuntimeError) as err:
        return ImageCheck(0, 0, CORRUPT_IMAGE, f"unreadable image ({err})")
    if transposed:
        width, height = height, width
    if image_format not in DECODABLE_FORMATS:
        return ImageCheck(width, height, UNSUPPORTED_IMAGE_FORMAT,
                          f"{image_format} image; expected one of {', '.join(sorted(DECODABLE_FORMATS))}")
    if min(width, height) < MIN_SIDE:
        return ImageCheck(width, height, IMAGE_TOO_SMALL, f"{width}x{height} pixels, under {MIN_SIDE} a side")
    if image_format not in _OPENCV_CERTAIN and cv2.imread(str(path), cv2.IMREAD_COLOR) is None:
        # What the index accepts the loader must read: OpenCV refuses some TIFFs PIL opens.
        return ImageCheck(width, height, UNSUPPORTED_IMAGE_FORMAT,
                          f"{image_format} image that OpenCV cannot decode (e.g. 32-bit or float samples)")
    problem = truncation_problem(path)
    if problem:
        return ImageCheck(width, height, TRUNCATED_IMAGE,
                          f"truncated JPEG (no end-of-image marker; decoding fails: {problem})")
    return ImageCheck(width, height)


def truncation_problem(path: Path) -> str:
    """'' unless `path` is a JPEG (by its first bytes, never its suffix) that is cut short: one
    that lacks its end-of-image marker and whose pixels do not decode to the end; then the
    decoder's complaint. Bytes after a complete JPEG's end marker are fine. Decided once per
    file version (path, size, mtime) in a process: the loader asks for every sample."""
    try:
        stat = os.stat(path)
    except OSError as err:
        return f"cannot be read ({err.strerror})"
    return _truncation_problem(str(path), stat.st_size, stat.st_mtime_ns)


@functools.lru_cache(maxsize=65536)
def _truncation_problem(path: str, size: int, mtime_ns: int) -> str:
    with open(path, "rb") as handle:
        head = handle.read(len(_JPEG_START))
        if head != _JPEG_START or size < 4:
            return ""  # not a JPEG: its own decoder checks it
        handle.seek(-2, os.SEEK_END)
        if handle.read() == _JPEG_END:
            return ""
    return _decode_problem(Path(path))


def check_images(paths: list[Path], cache_dir: Path | None = None) -> list[ImageCheck]:
    """`check_image` of every path, reusing cached results of unchanged files.

    The cache file is keyed by the list of paths; an entry is reused when the file's size and
    mtime match. `cache_dir=None` checks every file.
    """
    paths = [Path(p) for p in paths]
    stats = [_size_mtime(p) for p in paths]
    cache_file = _cache_file(paths, Path(cache_dir).expanduser()) if cache_dir is not None else None
    cached = _read_cache(cache_file) if cache_file is not None else {}
    results, changed = [], False
    for path, stat in zip(paths, stats):
        entry = cached.get(str(path))
        if entry is not None and entry[0] == stat:
            results.append(entry[1])
            continue
        results.append(check_image(path))
        changed = True
    if cache_file is not None and changed:
        _write_cache(cache_file, paths, stats, results)
    return results


def _decode_problem(path: Path) -> str:
    """'' when the pixels decode completely, else the decoder's complaint."""
    try:
        with Image.open(path) as im:
            im.load()
    except (OSError, SyntaxError, ValueError) as err:
        return str(err)
    return ""


def _size_mtime(path: Path) -> tuple[int, int]:
    try:
        stat = path.stat()
    except OSError:
        return (-1, -1)
    return (stat.st_size, stat.st_mtime_ns)


def _cache_file(paths: list[Path], cache_dir: Path) -> Path:
    digest = hashlib.sha256(f"v{CHECK_VERSION}\n".encode())
    for path in paths:
        digest.update(str(path.resolve()).encode() + b"\n")
    return cache_dir / f"images-{digest.hexdigest()[:16]}.npz"


def _read_cache(cache_file: Path) -> dict[str, tuple[tuple[int, int], ImageCheck]]:
    if not cache_file.is_file():
        return {}
    try:
        with np.load(cache_file, allow_pickle=False) as arrays:
            columns = [arrays[name].tolist() for name in
                       ("paths", "sizes", "mtimes", "widths", "heights", "keys", "reasons")]
    except (OSError, ValueError, KeyError) as err:
        log.warning("%s: unreadable image-check cache (%s); checking the images again", cache_file, err)
        return {}
    return {path: ((size, mtime), ImageCheck(width, height, key, reason))
            for path, size, mtime, width, height, key, reason in zip(*columns)}


def _write_cache(cache_file: Path, paths: list[Path], stats: list[tuple[int, int]],
                 results: list[ImageCheck]) -> None:
    """Atomic write (parallel jobs may index the same split); failure only costs a re-check."""
    partial: str | None = None
    try:
        cache_file.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=cache_file.parent, suffix=".npz.tmp", delete=False) as handle:
            partial = handle.name
            np.savez(handle, paths=np.asarray([str(p) for p in paths], dtype=np.str_),
                     sizes=np.asarray([s for s, _ in stats], dtype=np.int64),
                     mtimes=np.asarray([m for _, m in stats], dtype=np.int64),
                     widths=np.asarray([r.width for r in results], dtype=np.int64),
                     heights=np.asarray([r.height for r in results], dtype=np.int64),
                     keys=np.asarray([r.key for r in results], dtype=np.str_),
                     reasons=np.asarray([r.reason for r in results], dtype=np.str_))
        os.replace(partial, cache_file)
    except OSError as err:
        if partial is not None:
            Path(partial).unlink(missing_ok=True)
        log.warning("%s: could not write the image-check cache (%s)", cache_file, err)
