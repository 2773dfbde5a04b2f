"""Caches of decoded, resized images: in RAM (uint8 arrays) or on disk (`.npy` files).

Memory of a RAM cache: one (h, w, 3) uint8 array per image with the long side at
`img_size`, h·w·3 bytes. coco128's images (COCO's mix of sizes, mostly 640x480 / 480x640)
average 0.89 MB at 640 and 0.22 MB at 320, so COCO train2017's 118,287 images need about
98 GiB at 640 and 24.5 GiB at 320 (val2017's 5,000: 4.1 GiB / 1.0 GiB). Loader workers
share the cache copy-on-write after the fork. The disk cache takes the same space on disk
and costs one `np.load` per image instead of a JPEG decode.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from lightyolo.data.transforms import CorruptImageError

log = logging.getLogger(__name__)

CACHE_MODES = ("ram", "disk")
DEFAULT_DISK_DIR = Path("~/.cache/lightyolo/images")


def cache_mode(value: object) -> str | None:
    """'ram', 'disk' or None from a config value (true means 'ram'; false / null / 'false' none)."""
    if value is True or value == "ram":
        return "ram"
    if value == "disk":
        return "disk"
    if value in (False, None, "false", "none", "null"):
        return None
    raise ValueError(f"train.cache_images: {value!r}, expected ram | disk | false (true means ram)")


def _threads() -> int:
    return min(8, len(os.sched_getaffinity(0)))


class ImageCache:
    """Decoded images by index, built once with `load(i)` (OpenCV releases the GIL: threads).

    `get(i)` returns the cached array, or None for an image that failed to decode (logged
    by the caller's `on_error`) so the dataset can replace it.
    """

    def __init__(self, mode: str, load: Callable[[int], np.ndarray], paths: Sequence[Path], key: str,
                 on_error: Callable[[int, CorruptImageError], None], disk_dir: Path | None = None) -> None:
        if mode not in CACHE_MODES:
            raise ValueError(f"ImageCache: mode {mode!r}, expected one of {CACHE_MODES}")
        self.mode = mode
        self._arrays: list[np.ndarray | None] = [None] * len(paths)
        self._files: list[Path | None] = [None] * len(paths)
        root = (disk_dir or DEFAULT_DISK_DIR).expanduser()
        if mode == "disk":
            root.mkdir(parents=True, exist_ok=True)

        def fill(i: int) -> None:
            try:
                if mode == "ram":
                    self._arrays[i] = load(i)
                    return
                file = root / f"{_file_key(paths[i], key)}.npy"
                if not file.exists():
                    tmp = file.with_suffix(f".{os.getpid()}.tmp.npy")
                    np.save(tmp, load(i))
                    tmp.replace(file)  # atomic: parallel jobs may fill the same cache
                self._files[i] = file
            except CorruptImageError as error:
                on_error(i, error)

        with ThreadPoolExecutor(_threads()) as pool:
            list(pool.map(fill, range(len(paths))))

    def get(self, index: int) -> np.ndarray | None:
        """The cached image, or None when it could not be decoded."""
        if self.mode == "ram":
            return self._arrays[index]
        file = self._files[index]
        return None if file is None else np.load(file)

    def nbytes(self) -> int:
        """Bytes the RAM cache holds (0 for the disk cache)."""
        return sum(a.nbytes for a in self._arrays if a is not None)


def _file_key(path: Path, key: str) -> str:
    """File name of a cached array: the image's path, size and mtime, and the resize setting."""
    try:
        stat = Path(path).stat()
    except OSError as error:
        raise CorruptImageError(Path(path), f"cannot be read ({error.strerror})") from error
    text = f"{Path(path).resolve()}|{stat.st_size}|{stat.st_mtime_ns}|{key}"
    return hashlib.sha1(text.encode()).hexdigest()
