"""Synthetic `shapes` detection dataset: the offline default that a small YOLO learns in minutes.

Each image is a noisy two-colour gradient with 0-6 filled shapes (circle, square, triangle,
cross) of varying size (about 10-55 % of the image side), colour, rotation and position.
Shapes may overlap partly, but an object is never hidden by more than `MAX_HIDDEN_FRACTION`
of its area, and every box is the tight box of the object's *visible* pixels. Output is a
YOLO-format folder (JPEG images, `labels/*.txt`, `data.yaml`) read back by
`lightyolo.data.yolo_format`.

Everything is a pure function of the generation parameters: image i of a split is drawn from
`numpy.random.default_rng([seed, split, i])` (split 0 train, 1 val, 2 test), so a split does
not depend on the other splits' sizes, and adding the test split left the train and val
images byte-identical. `ensure_shapes_dataset` caches the folder under
`root/<hash of parameters + version>` and is safe when several processes call it at once
(file lock + atomic rename).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
from filelock import FileLock
from PIL import Image, ImageDraw

SHAPE_NAMES = ("circle", "square", "triangle", "cross")
# Bump when rendering changes, so caches made by older code are not reused.
GENERATOR_VERSION = 1
SPLITS = ("train", "val", "test")  # the index is the split's seed stream
BACKGROUND_PROBABILITY = 0.05
SIZE_RANGE = (0.10, 0.55)  # object side as a fraction of the image side
MAX_HIDDEN_FRACTION = 0.4
MIN_COLOUR_DISTANCE = 80.0  # RGB distance between an object and the background under it
PLACEMENT_TRIES = 20
JPEG_QUALITY = 92


def ensure_shapes_dataset(root: str | Path, *, num_train: int, num_val: int, image_size: int,
                          seed: int, max_objects: int = 6, num_test: int = 0) -> Path:
    """Folder of the shapes dataset for these parameters, generating it on first use."""
    params = {"num_train": num_train, "num_val": num_val, "num_test": num_test, "image_size": image_size,
              "seed": seed, "max_objects": max_objects, "version": GENERATOR_VERSION}
    for key in ("num_train", "num_val", "image_size", "max_objects"):
        if int(params[key]) < 1:
            raise ValueError(f"dataset.{key}={params[key]}: expected a positive integer")
    if int(num_test) < 0:
        raise ValueError(f"dataset.num_test={num_test}: expected 0 (no test split) or a positive integer")
    digest = hashlib.sha1(json.dumps(params, sort_keys=True).encode()).hexdigest()[:12]
    root = Path(root).expanduser()
    root.mkdir(parents=True, exist_ok=True)
    folder = root / digest
    with FileLock(str(root / f"{digest}.lock")):
        if folder.is_dir():  # only complete folders are ever renamed into place
            return folder
        tmp = Path(tempfile.mkdtemp(prefix=f".{digest}-", dir=root))
        try:
            write_shapes_dataset(tmp, num_train=num_train, num_val=num_val, num_test=num_test,
                                 image_size=image_size, seed=seed, max_objects=max_objects)
            (tmp / "params.json").write_text(json.dumps(params, indent=1, sort_keys=True))
            os.replace(tmp, folder)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    return folder


def write_shapes_dataset(out_dir: Path, *, num_train: int, num_val: int, image_size: int,
                         seed: int, max_objects: int = 6, num_test: int = 0) -> None:
    """Write `images/{train,val,test}`, `labels/{train,val,test}` and `data.yaml` under
    `out_dir` (no test folders when `num_test` is 0)."""
    for split_index, (split, count) in enumerate(zip(SPLITS, (num_train, num_val, num_test))):
        if not count:
            continue
        images_dir = out_dir / "images" / split
        labels_dir = out_dir / "labels" / split
        images_dir.mkdir(parents=True, exist_ok=True)
        labels_dir.mkdir(parents=True, exist_ok=True)
        for i in range(count):
            rng = np.random.default_rng([seed, split_index, i])
            pixels, classes, boxes = render_image(rng, image_size, max_objects)
            stem = f"{i:06d}"
            Image.fromarray(pixels).save(images_dir / f"{stem}.jpg", quality=JPEG_QUALITY)
            lines = [f"{c} {x:.6f} {y:.6f} {w:.6f} {h:.6f}" for c, (x, y, w, h) in zip(classes, boxes)]
            (labels_dir / f"{stem}.txt").write_text("".join(line + "\n" for line in lines))
    names = "\n".join(f"  {i}: {name}" for i, name in enumerate(SHAPE_NAMES))
    (out_dir / "data.yaml").write_text(
        f"# synthetic shapes, generator version {GENERATOR_VERSION}\npath: .\n"
        f"train: images/train\nval: images/val\n{'test: images/test' if num_test else ''}\nnames:\n{names}\n")


def render_image(rng: np.random.Generator, size: int, max_objects: int
                 ) -> tuple[np.ndarray, list[int], list[tuple[float, float, float, float]]]:
    """One (size, size, 3) uint8 image, its classes and normalised (cx, cy, w, h) boxes."""
    background = _gradient_background(rng, size)
    n_objects = 0 if rng.random() < BACKGROUND_PROBABILITY else int(rng.integers(1, max_objects + 1))
    # owner[y, x] = 1 + index of the object painted last at that pixel (0 = background)
    owner = np.zeros((size, size), dtype=np.uint8)
    full_areas: list[int] = []
    classes: list[int] = []
    colours: list[np.ndarray] = []
    for _ in range(n_objects):
        placed = _place_object(rng, size, owner, full_areas)
        if placed is None:
            continue
        cls, mask = placed
        colour = _contrasting_colour(rng, background[mask].mean(axis=0)).astype(np.uint8)
        owner[mask] = len(classes) + 1
        full_areas.append(int(mask.sum()))
        classes.append(cls)
        colours.append(colour)

    image = background
    painted = owner > 0
    palette = np.array([(0, 0, 0), *colours], dtype=np.uint8)
    image[painted] = palette[owner[painted]]
    boxes = []
    for k in range(1, len(colours) + 1):
        visible = owner == k
        rows = np.flatnonzero(visible.any(axis=1))
        cols = np.flatnonzero(visible.any(axis=0))
        x1, x2, y1, y2 = cols[0], cols[-1] + 1, rows[0], rows[-1] + 1
        boxes.append(((x1 + x2) / 2 / size, (y1 + y2) / 2 / size, (x2 - x1) / size, (y2 - y1) / size))
    # sensor-like noise: sum of two uniform 0..15 draws per value, centred (raw bits are cheap)
    bits = rng.bit_generator.random_raw(image.size // 4 + 1).view(np.uint8)[: 2 * image.size]
    noise = (bits & 15).reshape(2, *image.shape)
    noisy = image.astype(np.int16) + noise[0] + noise[1] - 15
    return np.clip(noisy, 0, 255).astype(np.uint8), classes, boxes


def _place_object(rng: np.random.Generator, size: int, owner: np.ndarray, full_areas: list[int]
                  ) -> tuple[int, np.ndarray] | None:
    """(class, mask) of a new shape that hides no earlier object too much, or None."""
    cls = int(rng.integers(len(SHAPE_NAMES)))
    for _ in range(PLACEMENT_TRIES):
        side = rng.uniform(*SIZE_RANGE) * size
        cx, cy = rng.uniform(side / 2, size - side / 2, 2)
        mask = _shape_mask(SHAPE_NAMES[cls], size, cx, cy, side, angle=rng.uniform(-20, 20))
        if not mask.any():
            continue
        hidden_ids, hidden_counts = np.unique(owner[mask], return_counts=True)
        still_visible = [np.count_nonzero(owner == k) - c for k, c in zip(hidden_ids, hidden_counts) if k]
        areas = [full_areas[k - 1] for k in hidden_ids if k]
        if all(v >= (1 - MAX_HIDDEN_FRACTION) * a for v, a in zip(still_visible, areas)):
            return cls, mask
    return None


def _shape_mask(shape: str, size: int, cx: float, cy: float, side: float, angle: float) -> np.ndarray:
    """Boolean (size, size) mask of one filled shape, `side` across, rotated by `angle` degrees."""
    canvas = Image.new("L", (size, size), 0)
    draw = ImageDraw.Draw(canvas)
    r = side / 2
    if shape == "circle":
        draw.ellipse((cx - r, cy - r, cx + r, cy + r), fill=1)
    elif shape == "square":
        draw.polygon(_rotated(cx, cy, [(-r, -r), (r, -r), (r, r), (-r, r)], angle), fill=1)
    elif shape == "triangle":
        corners = [(r * math.cos(a), r * math.sin(a)) for a in np.deg2rad([-90, 30, 150])]
        draw.polygon(_rotated(cx, cy, corners, angle), fill=1)
    elif shape == "cross":
        t = r / 3  # arm half-thickness
        outline = [(-t, -r), (t, -r), (t, -t), (r, -t), (r, t), (t, t), (t, r), (-t, r),
                   (-t, t), (-r, t), (-r, -t), (-t, -t)]
        draw.polygon(_rotated(cx, cy, outline, angle), fill=1)
    else:
        raise ValueError(f"unknown shape {shape!r}; expected one of {SHAPE_NAMES}")
    return np.asarray(canvas, dtype=bool)


def _rotated(cx: float, cy: float, points: list[tuple[float, float]], angle: float) -> list[tuple[float, float]]:
    c, s = math.cos(math.radians(angle)), math.sin(math.radians(angle))
    return [(cx + x * c - y * s, cy + x * s + y * c) for x, y in points]


def _gradient_background(rng: np.random.Generator, size: int) -> np.ndarray:
    """uint8 (size, size, 3) linear gradient between two muted random colours."""
    start, end = (tuple(int(v) for v in c) for c in rng.integers(40, 200, (2, 3)))
    direction = rng.uniform(0, 2 * math.pi)
    ramp = np.linspace(0.0, 1.0, size, dtype=np.float32)
    t = ramp[:, None] * math.sin(direction) + ramp[None, :] * math.cos(direction)
    t = (t - t.min()) * (255 / max(float(t.max() - t.min()), 1e-9))
    weight_of_end = Image.fromarray(t.astype(np.uint8))
    blend = Image.composite(Image.new("RGB", (size, size), end), Image.new("RGB", (size, size), start), weight_of_end)
    return np.array(blend)


def _contrasting_colour(rng: np.random.Generator, behind: np.ndarray) -> np.ndarray:
    """A random saturated colour at least MIN_COLOUR_DISTANCE from the colour behind it."""
    colour = rng.uniform(0, 255, 3)
    for _ in range(PLACEMENT_TRIES):
        if np.linalg.norm(colour - behind) >= MIN_COLOUR_DISTANCE:
            break
        colour = rng.uniform(0, 255, 3)
    else:
        colour = np.where(behind > 127, 0.0, 255.0)  # the opposite corner of the RGB cube
    return colour
