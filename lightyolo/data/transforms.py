"""Image decoding, letterboxing and YOLOv5's training augmentation, on OpenCV.

Reimplements the data pipeline of YOLOv5 v7.0 (ultralytics/yolov5, `utils/dataloaders.py`
`load_image` / `load_mosaic` and `utils/augmentations.py` `letterbox`, `random_perspective`,
`box_candidates`, `augment_hsv`), which the mosaic augmentation of YOLOv4 (arXiv 2004.10934)
introduced. Images are (H, W, 3) uint8 RGB arrays. Boxes travel as (n, 4) float32 pixel
`x1, y1, x2, y2` in continuous coordinates (0 is the left edge of the first pixel); OpenCV
addresses pixel centres, so the warp matrix is shifted by half a pixel for `cv2.warp*` and a
box and the pixels it covers move together exactly.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from lightyolo.data.image_check import truncation_problem

GREY = 114  # YOLOv5's padding colour
_BORDER = (GREY, GREY, GREY)


class CorruptImageError(OSError):
    """An image that cannot be decoded (or no longer matches its index); `str()` names the file."""

    def __init__(self, path: Path, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = path
        self.reason = reason


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


def decode(path: Path) -> np.ndarray:
    """(H, W, 3) uint8 RGB pixels of an image file, EXIF orientation applied (`cv2.imread`).

    The format is the content's (OpenCV and `image_check` both read it from the first bytes,
    never the suffix). Raises `CorruptImageError` naming the file when it is missing, when
    OpenCV cannot decode it, or when it is a truncated JPEG by `image_check.truncation_problem`,
    the decision the index check made (OpenCV would decode the missing part as grey with only
    a warning on stderr; bytes after a complete JPEG's end marker are fine).
    """
    path = Path(path)
    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if bgr is None:
        raise CorruptImageError(path, "file is missing" if not path.exists() else "OpenCV cannot decode it")
    if truncation_problem(path):
        raise CorruptImageError(path, "truncated JPEG (no end-of-image marker)")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def resize_long_side(img: np.ndarray, img_size: int, *, fast: bool) -> np.ndarray:
    """`img` with its long side resized to `img_size`, sides `ceil(side * img_size / long)`.

    As YOLOv5's `load_image`: bilinear for training (`fast`), area averaging (INTER_AREA)
    when shrinking for evaluation, bilinear when enlarging.
    """
    h, w = img.shape[:2]
    ratio = img_size / max(h, w)
    target = (math.ceil(w * ratio), math.ceil(h * ratio))
    if target == (w, h):
        return img
    interpolation = cv2.INTER_LINEAR if fast or ratio > 1 else cv2.INTER_AREA
    return cv2.resize(img, target, interpolation=interpolation)


def load_resized(path: Path, img_size: int, *, fast: bool) -> tuple[np.ndarray, tuple[int, int]]:
    """Decoded image with its long side resized to `img_size` (see `resize_long_side`), and (h0, w0)."""
    img = decode(path)
    return resize_long_side(img, img_size, fast=fast), img.shape[:2]


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
        img = cv2.resize(img, (new_w, new_h), interpolation=cv2.INTER_LINEAR)
    top, left = round(pad_y - 0.1), round(pad_x - 0.1)
    bottom, right = new_shape[0] - new_h - top, new_shape[1] - new_w - left
    if top or bottom or left or right:
        img = cv2.copyMakeBorder(img, top, bottom, left, right, cv2.BORDER_CONSTANT, value=_BORDER)
    return img, ratio, (pad_x, pad_y)


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


def mosaic_centre(size: int, rng: np.random.Generator) -> tuple[int, int]:
    """YOLOv5's random mosaic centre (xc, yc), uniform in [size / 2, 1.5 size) on a 2 size canvas."""
    xc, yc = (int(v) for v in rng.uniform(size / 2, 1.5 * size, 2))
    return xc, yc


def mosaic4(images: list[np.ndarray], boxes: list[np.ndarray], size: int, centre: tuple[int, int],
            region: tuple[int, int, int, int] | None = None, out: np.ndarray | None = None
            ) -> tuple[np.ndarray, np.ndarray]:
    """Tile four images around `centre` of a (2 size, 2 size) grey canvas.

    Image k goes to the top-left, top-right, bottom-left, bottom-right quadrant of the centre
    and is cropped at the canvas border; its boxes are shifted with it and clipped, and all
    four images' boxes are returned as one (n, 4) array in full-canvas pixels, image by image.
    Only `region` (x0, y0, x1, y1) of the canvas is composed (default: all of it), into a
    view of `out`, a preallocated (2 size, 2 size, 3 or 4) uint8 array when given:
    `source_region` says which part a warp will read, so the pixels it would never sample are
    neither filled nor copied. With 4 channels the RGB images go to the first three (the
    fourth is padding: OpenCV warps 4-channel images with SIMD, over twice as fast as 3).
    """
    x0, y0, x1, y1 = region or (0, 0, 2 * size, 2 * size)
    buffer = np.empty((2 * size, 2 * size, 3), dtype=np.uint8) if out is None else out
    canvas = buffer[:y1 - y0, :x1 - x0]
    canvas.fill(GREY)
    padded = canvas.shape[2] == 4
    xc, yc = centre
    offsets = []
    for k, img in enumerate(images):
        h, w = img.shape[:2]
        # canvas region (x1a..x2a, y1a..y2a) and the matching region of the image (x1b, y1b)
        x1a = max(xc - w, 0) if k in (0, 2) else xc
        x2a = xc if k in (0, 2) else min(xc + w, 2 * size)
        y1a = max(yc - h, 0) if k in (0, 1) else yc
        y2a = yc if k in (0, 1) else min(yc + h, 2 * size)
        x1b = w - (x2a - x1a) if k in (0, 2) else 0
        y1b = h - (y2a - y1a) if k in (0, 1) else 0
        # the part of the tile inside the composed region
        cx1, cy1, cx2, cy2 = max(x1a, x0), max(y1a, y0), min(x2a, x1), min(y2a, y1)
        if cx1 < cx2 and cy1 < cy2:
            sx, sy = x1b + cx1 - x1a, y1b + cy1 - y1a
            tile, dst = img[sy:sy + cy2 - cy1, sx:sx + cx2 - cx1], canvas[cy1 - y0:cy2 - y0, cx1 - x0:cx2 - x0]
            if padded:
                cv2.cvtColor(tile, cv2.COLOR_RGB2RGBA, dst=dst)  # writes into the view
            else:
                dst[:] = tile
        offsets.append((x1a - x1b, y1a - y1b) * 2)
    shift = np.repeat(np.array(offsets, dtype=np.float32), [len(b) for b in boxes], axis=0)
    shifted = np.concatenate(boxes).reshape(-1, 4) + shift
    return canvas, np.clip(shifted, 0, 2 * size, out=shifted)


def source_region(matrix: np.ndarray, out_hw: tuple[int, int], in_hw: tuple[int, int]
                  ) -> tuple[int, int, int, int]:
    """(x0, y0, x1, y1): the pixels of an `in_hw` input that warping by `matrix` (continuous
    coordinates) into `out_hw` can sample, with a pixel of margin for bilinear neighbours."""
    h, w = out_hw
    corners = np.array([[0, 0, 1], [w, 0, 1], [0, h, 1], [w, h, 1]], dtype=np.float64)
    if matrix[2, 0] or matrix[2, 1]:
        back = corners @ np.linalg.inv(matrix).T
        xs, ys = back[:, 0] / back[:, 2], back[:, 1] / back[:, 2]
    else:  # affine: OpenCV's closed-form inverse, far cheaper than a general 3x3 inverse
        back = corners @ cv2.invertAffineTransform(matrix[:2]).T
        xs, ys = back[:, 0], back[:, 1]
    x0 = min(max(math.floor(xs.min()) - 2, 0), in_hw[1] - 1)
    y0 = min(max(math.floor(ys.min()) - 2, 0), in_hw[0] - 1)
    x1 = max(min(math.ceil(xs.max()) + 2, in_hw[1]), x0 + 1)
    y1 = max(min(math.ceil(ys.max()) + 2, in_hw[0]), y0 + 1)
    return x0, y0, x1, y1


def shifted_source(matrix: np.ndarray, x0: int, y0: int) -> np.ndarray:
    """`matrix` for an input cropped at (x0, y0): the crop's pixel (0, 0) was (x0, y0)."""
    shift = np.eye(3)
    shift[0, 2], shift[1, 2] = x0, y0
    return matrix @ shift


def perspective_matrix(in_hw: tuple[int, int], out_hw: tuple[int, int], hyp: AugmentHyp,
                       rng: np.random.Generator) -> tuple[np.ndarray, float]:
    """YOLOv5's `random_perspective` matrix (continuous coordinates) and its scale draw.

    Centre the input on the origin, perspective, rotate + scale, shear, then translate the
    centre to a random point within +/- translate of the output's centre; the draws are
    made in YOLOv5's order (perspective x, y, angle, scale, shear x, y, translate x, y).
    """
    p, d, sc, sh, t = hyp.perspective, hyp.degrees, hyp.scale, hyp.shear, hyp.translate
    draws = rng.uniform((-p, -p, -d, 1 - sc, -sh, -sh, 0.5 - t, 0.5 - t),
                        (p, p, d, 1 + sc, sh, sh, 0.5 + t, 0.5 + t)).tolist()
    px, py, angle, scale, shear_x, shear_y, tx, ty = draws
    angle = math.radians(angle)
    cos, sin = scale * math.cos(angle), scale * math.sin(angle)
    shx, shy = math.tan(math.radians(shear_x)), math.tan(math.radians(shear_y))
    cx, cy = -in_hw[1] / 2, -in_hw[0] / 2
    # translate @ shear @ rotate in closed form (their product is affine) ...
    a, b, e = cos - shx * sin, sin + shx * cos, tx * out_hw[1]
    c, dd, f = shy * cos - sin, shy * sin + cos, ty * out_hw[0]
    linear = np.array([[a, b, e], [c, dd, f], [0.0, 0.0, 1.0]])
    # ... then @ perspective @ centre
    centred = np.array([[1.0, 0.0, cx], [0.0, 1.0, cy], [px, py, 1.0 + px * cx + py * cy]])
    return linear @ centred, scale


def flip_matrix(out_hw: tuple[int, int], *, up_down: bool, left_right: bool) -> np.ndarray:
    """The (continuous-coordinate) matrix of flipping an `out_hw` image: x -> w - x, y -> h - y."""
    h, w = out_hw
    return np.array([[-1.0 if left_right else 1.0, 0.0, w if left_right else 0.0],
                     [0.0, -1.0 if up_down else 1.0, h if up_down else 0.0], [0.0, 0.0, 1.0]])


# pixel index p is continuous coordinate p + 0.5: OpenCV's matrix is HALF_BACK @ M @ HALF_ON
_HALF_ON = np.array([[1, 0, 0.5], [0, 1, 0.5], [0, 0, 1]])
_HALF_BACK = np.array([[1, 0, -0.5], [0, 1, -0.5], [0, 0, 1]])


def warp_image(img: np.ndarray, matrix: np.ndarray, out_hw: tuple[int, int], *, perspective: bool,
               out: np.ndarray | None = None) -> np.ndarray:
    """One `cv2.warpPerspective` (or `warpAffine`) of `img` by the continuous-coordinate
    `matrix`, into `out` when given (a preallocated (h, w, 3) uint8 array)."""
    cv_matrix = _HALF_BACK @ matrix @ _HALF_ON
    dsize = (out_hw[1], out_hw[0])
    if perspective:
        return cv2.warpPerspective(img, cv_matrix, dsize, dst=out, flags=cv2.INTER_LINEAR, borderValue=_BORDER)
    return cv2.warpAffine(img, cv_matrix[:2], dsize, dst=out, flags=cv2.INTER_LINEAR, borderValue=_BORDER)


def warp_boxes(boxes: np.ndarray, matrix: np.ndarray, out_hw: tuple[int, int]) -> np.ndarray:
    """The box of each box's four warped corners, clipped to the output."""
    if matrix[2, 0] or matrix[2, 1]:  # perspective: warp the four corners
        n = len(boxes)
        corners = np.ones((n * 4, 3))
        corners[:, :2] = boxes[:, [0, 1, 2, 3, 0, 3, 2, 1]].reshape(n * 4, 2)  # x1y1, x2y2, x1y2, x2y1
        corners = corners @ matrix.T
        corners = (corners[:, :2] / corners[:, 2:3]).reshape(n, 8)
        xs, ys = corners[:, 0::2], corners[:, 1::2]
        new = np.stack([xs.min(1), ys.min(1), xs.max(1), ys.max(1)], axis=1)
    else:  # affine: x' = a x + b y + c is extreme at the corners term by term
        ax = boxes[:, 0::2, None].astype(np.float64) * matrix[:2, 0]  # (n, 2: x1/x2, 2: x'/y' term)
        by = boxes[:, 1::2, None].astype(np.float64) * matrix[:2, 1]
        new = np.concatenate([ax.min(1) + by.min(1), ax.max(1) + by.max(1)], axis=1) + matrix[[0, 1, 0, 1], 2]
    return np.clip(new, 0, (out_hw[1], out_hw[0], out_hw[1], out_hw[0])).astype(np.float32)


def random_affine(img: np.ndarray, boxes: np.ndarray, out_size: tuple[int, int], hyp: AugmentHyp,
                  rng: np.random.Generator, out: np.ndarray | None = None, then: np.ndarray | None = None
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """YOLOv5's `random_perspective`: one warp of the pixels, the same matrix on the boxes.

    `out_size` is (h, w); `out` an optional preallocated output; `then` an optional matrix
    applied after the random one in the same warp (a `flip_matrix`). Returns the warped
    image, the boxes (the box of the four warped corners, clipped) and the boolean mask of
    boxes kept by `box_candidates`.
    """
    matrix, scale = perspective_matrix(img.shape[:2], out_size, hyp, rng)
    if then is not None:
        matrix = then @ matrix
    warped = warp_image(img, matrix, out_size, perspective=bool(hyp.perspective), out=out)
    if len(boxes) == 0:
        return warped, boxes.reshape(0, 4), np.zeros(0, dtype=bool)
    new = warp_boxes(boxes, matrix, out_size)
    return warped, new, box_candidates(boxes, new, area_gain=scale * scale)


def box_candidates(before: np.ndarray, after: np.ndarray, *, area_gain: float, min_side: float = 2.0,
                   max_aspect: float = 100.0, min_area_fraction: float = 0.1) -> np.ndarray:
    """Boxes worth keeping after a warp: sides > `min_side` px, aspect < `max_aspect`, and at
    least `min_area_fraction` of the area the box would have had unclipped (YOLOv5's rule,
    which scales the boxes before by the warp's linear scale: `area_gain` = scale²).
    """
    w1, h1 = before[:, 2] - before[:, 0], before[:, 3] - before[:, 1]
    w2, h2 = after[:, 2] - after[:, 0], after[:, 3] - after[:, 1]
    aspect = np.maximum(w2 / (h2 + 1e-16), h2 / (w2 + 1e-16))
    return (w2 > min_side) & (h2 > min_side) & (w2 * h2 / (w1 * h1 * area_gain + 1e-16) > min_area_fraction) \
        & (aspect < max_aspect)


def hsv_gains(hyp: AugmentHyp, rng: np.random.Generator) -> np.ndarray:
    """YOLOv5's gains r = uniform(-1, 1) * [h, s, v] + 1 on hue, saturation and value."""
    return rng.uniform(-1, 1, 3) * (hyp.hsv_h, hyp.hsv_s, hyp.hsv_v) + 1


_LEVELS = np.repeat(np.arange(256, dtype=np.float64)[:, None], 3, axis=1)  # (256, 3): one column per channel


def hsv_lut(gains: np.ndarray) -> np.ndarray:
    """The (256, 1, 3) uint8 table of the gains: hue wraps at 180 (OpenCV's 8-bit hue spans
    0..179, as in YOLOv5), saturation and value clip at 255."""
    table = _LEVELS * gains
    table[:, 0] %= 180
    np.clip(table[:, 1:], 0, 255, out=table[:, 1:])
    return table.astype(np.uint8).reshape(256, 1, 3)


def augment_hsv(img: np.ndarray, hyp: AugmentHyp, rng: np.random.Generator, *, inplace: bool = False
                ) -> np.ndarray:
    """Random multiplicative gains on H, S, V (`hsv_gains`) through one 3-channel uint8 LUT.

    With `inplace` the (contiguous) `img` is overwritten and returned.
    """
    if not (hyp.hsv_h or hyp.hsv_s or hyp.hsv_v):
        return img  # YOLOv5 draws no gains then either
    hsv = cv2.cvtColor(img, cv2.COLOR_RGB2HSV, dst=img if inplace else None)
    cv2.LUT(hsv, hsv_lut(hsv_gains(hyp, rng)), dst=hsv)
    return cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB, dst=hsv)


def augment_hsv_into_new(img: np.ndarray, hyp: AugmentHyp, rng: np.random.Generator,
                         scratch: np.ndarray | None = None) -> np.ndarray:
    """`augment_hsv` of an (H, W, 3) RGB or (H, W, 4) padded-RGB image into a new (H, W, 3)
    array (the input is left as it is); `scratch` an optional (H, W, 3) uint8 array for the
    HSV image."""
    if not (hyp.hsv_h or hyp.hsv_s or hyp.hsv_v):
        return cv2.cvtColor(img, cv2.COLOR_RGBA2RGB) if img.shape[2] == 4 else img.copy()
    hsv = cv2.cvtColor(img, cv2.COLOR_RGB2HSV, dst=scratch)  # reads the first three channels
    cv2.LUT(hsv, hsv_lut(hsv_gains(hyp, rng)), dst=hsv)
    return cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)


def mixup(img: np.ndarray, boxes: np.ndarray, classes: np.ndarray, other_img: np.ndarray,
          other_boxes: np.ndarray, other_classes: np.ndarray, rng: np.random.Generator
          ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """MixUp (arXiv 1710.09412) as YOLOv5 applies it: blend with ratio ~ Beta(32, 32), keep all boxes."""
    ratio = rng.beta(32.0, 32.0)
    blended = cv2.addWeighted(img, ratio, other_img, 1 - ratio, 0.0)
    return blended, np.concatenate([boxes, other_boxes]), np.concatenate([classes, other_classes])
