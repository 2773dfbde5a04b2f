"""Image loading, letterboxing and YOLOv5's training augmentation, with numpy and PIL only.

Reimplements the data pipeline of YOLOv5 v7.0 (ultralytics/yolov5, `utils/dataloaders.py`
`load_image` / `load_mosaic` and `utils/augmentations.py` `letterbox`, `random_perspective`,
`box_candidates`, `augment_hsv`), which the mosaic augmentation of YOLOv4 (arXiv 2004.10934)
introduced. Boxes travel as (n, 4) float32 pixel `x1, y1, x2, y2` in continuous coordinates
(0 is the left edge of the first pixel), which is also how PIL's geometric transforms address
pixels, so a box and the pixels it covers move together exactly.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from lightyolo.data.yolo_format import exif_transposes

GREY = 114  # YOLOv5's padding colour


@dataclass(frozen=True)
class AugmentHyp:
    """YOLOv5's augmentation hyperparameters, defaults from `hyp.scratch-low.yaml`."""

    hsv_h: float = 0.015  # hue gain (fraction)
    hsv_s: float = 0.7  # saturation gain (fraction)
    hsv_v: float = 0.4  # value gain (fraction)
    degrees: float = 0.0  # rotation (+/- deg)
    translate: float = 0.1  # translation (+/- fraction of the output size)
    scale: float = 0.5  # scale gain (+/-)
    shear: float = 0.0  # shear (+/- deg)
    perspective: float = 0.0  # perspective (+/- fraction), 0..0.001
    flipud: float = 0.0  # probability of a vertical flip
    fliplr: float = 0.5  # probability of a horizontal flip
    mosaic: float = 1.0  # probability of a 4-image mosaic
    mixup: float = 0.0  # probability of mixing two mosaics


def load_resized(path: Path, img_size: int, *, fast: bool) -> tuple[np.ndarray, tuple[int, int]]:
    """(H, W, 3) uint8 RGB image with its long side resized to `img_size`, and (h0, w0).

    Sizes are `ceil(side * img_size / long_side)` as in YOLOv5's `load_image`. `fast` (for
    training) lets the JPEG decoder skip detail with `draft` (DCT scaling by 1/2..1/8) and
    resizes bilinearly; otherwise downscaling uses PIL's BOX filter, the area average that
    OpenCV's INTER_AREA (YOLOv5's choice for evaluation) computes, and upscaling is bilinear
    (INTER_LINEAR). The EXIF orientation is applied, as OpenCV's `imread` does.
    """
    with Image.open(path) as im:
        raw_w, raw_h = im.size
        ratio = img_size / max(raw_w, raw_h)
        if fast and ratio < 1:
            im.draft("RGB", (math.ceil(raw_w * ratio), math.ceil(raw_h * ratio)))
        transposed = exif_transposes(im)
        if transposed:
            im = ImageOps.exif_transpose(im)
        if im.mode != "RGB":
            im = im.convert("RGB")
        im.load()
    w0, h0 = (raw_h, raw_w) if transposed else (raw_w, raw_h)
    target = (math.ceil(w0 * ratio), math.ceil(h0 * ratio))
    if im.size != target:
        shrink = target[0] < im.size[0]
        resample = Image.Resampling.BOX if shrink and not fast else Image.Resampling.BILINEAR
        im = im.resize(target, resample)
    return np.asarray(im), (h0, w0)


def letterbox(img: np.ndarray, new_shape: tuple[int, int], *, scaleup: bool
              ) -> tuple[np.ndarray, float, tuple[float, float]]:
    """Fit `img` into `new_shape` (h, w) keeping its aspect ratio, centred on grey.

    Returns the image, the resize ratio and the (pad_x, pad_y) half-padding as floats, the
    convention of YOLOv5's `letterbox(auto=False)` (the image itself starts at
    `round(pad - 0.1)`, at most half a pixel before the float pad).
    """
    h, w = img.shape[:2]
    ratio = min(new_shape[0] / h, new_shape[1] / w)
    if not scaleup:
        ratio = min(ratio, 1.0)
    new_w, new_h = round(w * ratio), round(h * ratio)
    pad_x, pad_y = (new_shape[1] - new_w) / 2, (new_shape[0] - new_h) / 2
    if (new_w, new_h) != (w, h):
        img = np.asarray(Image.fromarray(img).resize((new_w, new_h), Image.Resampling.BILINEAR))
    top, left = round(pad_y - 0.1), round(pad_x - 0.1)
    out = np.full((new_shape[0], new_shape[1], 3), GREY, dtype=np.uint8)
    out[top:top + new_h, left:left + new_w] = img
    return out, ratio, (pad_x, pad_y)


def yolo_to_xyxy(boxes: np.ndarray, width: float, height: float, pad_x: float = 0.0,
                 pad_y: float = 0.0) -> np.ndarray:
    """Normalised (cx, cy, w, h) -> pixel (x1, y1, x2, y2) in a `width` x `height` frame + pad."""
    out = np.empty_like(boxes, dtype=np.float32)
    out[:, 0] = width * (boxes[:, 0] - boxes[:, 2] / 2) + pad_x
    out[:, 1] = height * (boxes[:, 1] - boxes[:, 3] / 2) + pad_y
    out[:, 2] = width * (boxes[:, 0] + boxes[:, 2] / 2) + pad_x
    out[:, 3] = height * (boxes[:, 1] + boxes[:, 3] / 2) + pad_y
    return out


def xyxy_to_yolo(boxes: np.ndarray, width: int, height: int) -> np.ndarray:
    """Pixel (x1, y1, x2, y2) -> (cx, cy, w, h) normalised to a `width` x `height` image."""
    out = np.empty_like(boxes, dtype=np.float32)
    out[:, 0] = (boxes[:, 0] + boxes[:, 2]) / (2 * width)
    out[:, 1] = (boxes[:, 1] + boxes[:, 3]) / (2 * height)
    out[:, 2] = (boxes[:, 2] - boxes[:, 0]) / width
    out[:, 3] = (boxes[:, 3] - boxes[:, 1]) / height
    return out


def mosaic4(images: list[np.ndarray], boxes: list[np.ndarray], size: int, rng: np.random.Generator
            ) -> tuple[np.ndarray, list[np.ndarray]]:
    """Tile four images around a random centre of a (2 size, 2 size) grey canvas.

    Image k goes to the top-left, top-right, bottom-left, bottom-right quadrant of the centre
    and is cropped at the canvas border; its boxes are shifted with it and clipped.
    """
    canvas = np.full((2 * size, 2 * size, 3), GREY, dtype=np.uint8)
    xc, yc = (int(v) for v in rng.uniform(size / 2, 1.5 * size, 2))
    shifted = []
    for k, (img, img_boxes) in enumerate(zip(images, boxes)):
        h, w = img.shape[:2]
        # canvas region (x1a..x2a, y1a..y2a) and the matching region of the image (x1b, y1b)
        x1a = max(xc - w, 0) if k in (0, 2) else xc
        x2a = xc if k in (0, 2) else min(xc + w, 2 * size)
        y1a = max(yc - h, 0) if k in (0, 1) else yc
        y2a = yc if k in (0, 1) else min(yc + h, 2 * size)
        x1b = w - (x2a - x1a) if k in (0, 2) else 0
        y1b = h - (y2a - y1a) if k in (0, 1) else 0
        canvas[y1a:y2a, x1a:x2a] = img[y1b:y1b + (y2a - y1a), x1b:x1b + (x2a - x1a)]
        offset = np.array([x1a - x1b, y1a - y1b] * 2, dtype=np.float32)
        shifted.append(np.clip(img_boxes + offset, 0, 2 * size))
    return canvas, shifted


def random_affine(img: np.ndarray, boxes: np.ndarray, out_size: tuple[int, int], hyp: AugmentHyp,
                  rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """YOLOv5's `random_perspective`: centre, rotate/scale, shear, perspective, translate.

    `out_size` is (h, w); the input's centre goes to a random point within +/- translate of
    the output's centre. Returns the warped image, the boxes (the box of the four warped
    corners, clipped) and the boolean mask of boxes kept by `box_candidates`.
    """
    out_h, out_w = out_size
    centre = np.eye(3)
    centre[0, 2], centre[1, 2] = -img.shape[1] / 2, -img.shape[0] / 2
    perspective = np.eye(3)
    perspective[2, 0], perspective[2, 1] = rng.uniform(-hyp.perspective, hyp.perspective, 2)
    angle = math.radians(rng.uniform(-hyp.degrees, hyp.degrees))
    scale = rng.uniform(1 - hyp.scale, 1 + hyp.scale)
    rotate = np.eye(3)
    rotate[:2, :2] = scale * np.array([[math.cos(angle), math.sin(angle)], [-math.sin(angle), math.cos(angle)]])
    shear = np.eye(3)
    shear[0, 1], shear[1, 0] = (math.tan(math.radians(v)) for v in rng.uniform(-hyp.shear, hyp.shear, 2))
    translate = np.eye(3)
    translate[0, 2] = rng.uniform(0.5 - hyp.translate, 0.5 + hyp.translate) * out_w
    translate[1, 2] = rng.uniform(0.5 - hyp.translate, 0.5 + hyp.translate) * out_h
    matrix = translate @ shear @ rotate @ perspective @ centre

    # PIL maps each output pixel back into the input, so it takes the inverse matrix
    inverse = np.linalg.inv(matrix)
    source = Image.fromarray(img)
    if hyp.perspective:
        coeffs = (inverse / inverse[2, 2]).flatten()[:8]
        warped = source.transform((out_w, out_h), Image.Transform.PERSPECTIVE, tuple(coeffs),
                                  resample=Image.Resampling.BILINEAR, fillcolor=(GREY,) * 3)
    else:
        warped = source.transform((out_w, out_h), Image.Transform.AFFINE, tuple(inverse[:2].flatten()),
                                  resample=Image.Resampling.BILINEAR, fillcolor=(GREY,) * 3)

    n = len(boxes)
    if n == 0:
        return np.asarray(warped), boxes.reshape(0, 4), np.zeros(0, dtype=bool)
    corners = np.ones((n * 4, 3))
    corners[:, :2] = boxes[:, [0, 1, 2, 3, 0, 3, 2, 1]].reshape(n * 4, 2)  # x1y1, x2y2, x1y2, x2y1
    corners = corners @ matrix.T
    corners = (corners[:, :2] / corners[:, 2:3]).reshape(n, 8)
    xs, ys = corners[:, 0::2], corners[:, 1::2]
    new = np.stack([xs.min(1), ys.min(1), xs.max(1), ys.max(1)], axis=1)
    new[:, [0, 2]] = new[:, [0, 2]].clip(0, out_w)
    new[:, [1, 3]] = new[:, [1, 3]].clip(0, out_h)
    keep = box_candidates(boxes, new, area_gain=scale * scale)
    return np.asarray(warped), new.astype(np.float32), keep


def box_candidates(before: np.ndarray, after: np.ndarray, *, area_gain: float, min_side: float = 2.0,
                   max_aspect: float = 100.0, min_area_fraction: float = 0.1) -> np.ndarray:
    """Boxes worth keeping after a warp: sides > `min_side` px, aspect < `max_aspect`, and at
    least `min_area_fraction` of the area the box would have had unclipped (YOLOv5's rule;
    `area_gain` is the warp's area scale, where YOLOv5 multiplies by the linear scale).
    """
    w1, h1 = before[:, 2] - before[:, 0], before[:, 3] - before[:, 1]
    w2, h2 = after[:, 2] - after[:, 0], after[:, 3] - after[:, 1]
    aspect = np.maximum(w2 / (h2 + 1e-16), h2 / (w2 + 1e-16))
    return (w2 > min_side) & (h2 > min_side) & (w2 * h2 / (w1 * h1 * area_gain + 1e-16) > min_area_fraction) \
        & (aspect < max_aspect)


def augment_hsv(img: np.ndarray, hyp: AugmentHyp, rng: np.random.Generator) -> np.ndarray:
    """Random multiplicative gains on hue, saturation and value, through lookup tables."""
    gains = rng.uniform(-1, 1, 3) * (hyp.hsv_h, hyp.hsv_s, hyp.hsv_v) + 1
    levels = np.arange(256, dtype=np.float64)
    lut = np.concatenate([
        (levels * gains[0]) % 256,  # PIL's hue spans 0..255 (OpenCV's 0..179)
        np.clip(levels * gains[1], 0, 255),
        np.clip(levels * gains[2], 0, 255),
    ]).astype(np.uint8)
    hsv = Image.fromarray(img).convert("HSV").point(lut.tolist())
    return np.asarray(hsv.convert("RGB"))


def mixup(img: np.ndarray, boxes: np.ndarray, classes: np.ndarray, other_img: np.ndarray,
          other_boxes: np.ndarray, other_classes: np.ndarray, rng: np.random.Generator
          ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """MixUp (arXiv 1710.09412) as YOLOv5 applies it: blend with ratio ~ Beta(32, 32), keep all boxes."""
    ratio = rng.beta(32.0, 32.0)
    blended = (img.astype(np.float32) * ratio + other_img.astype(np.float32) * (1 - ratio)).astype(np.uint8)
    return blended, np.concatenate([boxes, other_boxes]), np.concatenate([classes, other_classes])
