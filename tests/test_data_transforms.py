"""Letterbox, affine, box filtering and HSV jitter, on small synthetic images."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
from PIL import Image

import cv2

from lightyolo.data.transforms import (AugmentHyp, augment_hsv, augment_hsv_into_new, box_candidates, flip_matrix,
                                       letterbox, load_resized, mixup, mosaic4, perspective_matrix, random_affine,
                                       warp_boxes, warp_image, xyxy_to_yolo, yolo_to_xyxy)

NO_JITTER = AugmentHyp(hsv_h=0, hsv_s=0, hsv_v=0, translate=0, scale=0, fliplr=0, mosaic=0)


def test_letterbox_centres_the_image_and_reports_yolov5_float_padding():
    img = np.full((30, 64, 3), 200, dtype=np.uint8)
    out, ratio, (pad_x, pad_y) = letterbox(img, (64, 64), scaleup=False)
    assert out.shape == (64, 64, 3) and ratio == 1.0 and (pad_x, pad_y) == (0.0, 17.0)
    assert (out[17:47] == 200).all() and (out[:17] == 114).all() and (out[47:] == 114).all()
    # odd padding: 3 rows split 1 above / 2 below (YOLOv5's round(pad - 0.1))
    out, _, (_, pad_y) = letterbox(np.zeros((29, 64, 3), np.uint8), (32, 64), scaleup=False)
    assert pad_y == 1.5 and (out[0] == 114).all() and (out[1:30] == 0).all() and (out[30:] == 114).all()


def test_letterbox_downscales_but_only_upscales_when_allowed():
    img = np.zeros((40, 80, 3), dtype=np.uint8)
    assert letterbox(img, (32, 32), scaleup=False)[1] == 0.4
    assert letterbox(img, (160, 160), scaleup=False)[1] == 1.0
    assert letterbox(img, (160, 160), scaleup=True)[1] == 2.0


def test_load_resized_uses_ceil_sizes_and_reports_the_original_shape(tmp_path):
    Image.new("RGB", (101, 37), (5, 6, 7)).save(tmp_path / "a.png")
    for fast in (False, True):
        img, (h0, w0) = load_resized(tmp_path / "a.png", 64, fast=fast)
        assert img.shape == (24, 64, 3) and (h0, w0) == (37, 101)  # ceil(37 * 64 / 101) = 24
        assert img.dtype == np.uint8 and (img == (5, 6, 7)).all()


def test_yolo_and_xyxy_conversions_round_trip():
    boxes = np.array([[0.5, 0.25, 0.2, 0.1], [0.1, 0.9, 0.2, 0.2]], dtype=np.float32)
    xyxy = yolo_to_xyxy(boxes, 200, 100, pad_x=3, pad_y=4)
    np.testing.assert_allclose(xyxy[0], [83, 24, 123, 34])
    np.testing.assert_allclose(xyxy_to_yolo(xyxy - [3, 4, 3, 4], 200, 100), boxes, atol=1e-6)


def _solid_box_image(size: int, box: tuple[int, int, int, int]) -> np.ndarray:
    img = np.full((size, size, 3), 30, dtype=np.uint8)
    x1, y1, x2, y2 = box
    img[y1:y2, x1:x2] = (250, 20, 20)
    return img


def test_affine_moves_the_box_with_the_pixels():
    box = (20, 30, 50, 44)
    img = _solid_box_image(64, box)
    hyp = replace(NO_JITTER, translate=0.2, scale=0.5)
    for seed in range(5):
        out, new, keep = random_affine(img, np.array([box], np.float32), (64, 64), hyp, np.random.default_rng(seed))
        assert keep.tolist() == [True]
        red = (out[..., 0] > 140) & (out[..., 1] < 100)
        rows, cols = np.flatnonzero(red.any(1)), np.flatnonzero(red.any(0))
        # the red region's extent matches the transformed box to within a pixel (bilinear edges)
        np.testing.assert_allclose([cols[0], rows[0], cols[-1] + 1, rows[-1] + 1], new[0], atol=1.01)


@pytest.mark.parametrize("warp", [dict(degrees=40), dict(shear=10), dict(perspective=0.002)])
def test_warped_box_encloses_every_pixel_of_the_object(warp):
    box = (16, 20, 48, 40)
    img = _solid_box_image(64, box)
    hyp = replace(NO_JITTER, **warp)
    for seed in range(5):
        out, new, keep = random_affine(img, np.array([box], np.float32), (64, 64), hyp, np.random.default_rng(seed))
        red = (out[..., 0] > 140) & (out[..., 1] < 100)
        ys, xs = np.nonzero(red)
        x1, y1, x2, y2 = new[0]
        assert keep[0] and xs.min() >= x1 - 1 and xs.max() + 1 <= x2 + 1 and ys.min() >= y1 - 1 and ys.max() + 1 <= y2 + 1


def test_box_candidates_drop_slivers_and_mostly_cut_boxes():
    before = np.array([[0, 0, 10, 10], [0, 0, 10, 10], [0, 0, 10, 10], [0, 0, 100, 100]], np.float32)
    after = np.array([[0, 0, 10, 10], [0, 0, 10, 1.5], [0, 0, 3, 3], [0, 0, 90, 90]], np.float32)
    assert box_candidates(before, after, area_gain=1.0).tolist() == [True, False, False, True]
    # the same 3x3 remainder is kept when the warp shrank the box to a tenth of its area
    assert box_candidates(before[2:3], after[2:3], area_gain=0.1).tolist() == [True]


def test_hsv_with_zero_gains_keeps_colours_and_value_gain_brightens():
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)
    same = augment_hsv(img, NO_JITTER, rng)
    error = np.abs(same.astype(int) - img)
    assert error.max() <= 6 and error.mean() < 1  # 8-bit HSV round trip quantises hue
    brighter = augment_hsv(np.full((4, 4, 3), 100, np.uint8), replace(NO_JITTER, hsv_v=0.5),
                           np.random.default_rng(1))  # draws a value gain of ~1.0 .. 1.5
    gain = np.random.default_rng(1).uniform(-1, 1, 3)[2] * 0.5 + 1
    assert abs(int(brighter[0, 0, 0]) - round(100 * gain)) <= 1


def test_mixup_blends_pixels_and_keeps_both_label_sets():
    dark, light = np.full((4, 4, 3), 0, np.uint8), np.full((4, 4, 3), 200, np.uint8)
    boxes_a, boxes_b = np.array([[0, 0, 2, 2]], np.float32), np.array([[1, 1, 3, 3], [0, 0, 4, 4]], np.float32)
    img, boxes, classes = mixup(dark, boxes_a, np.array([0]), light, boxes_b, np.array([1, 2]),
                                np.random.default_rng(0))
    assert 70 < img[0, 0, 0] < 130  # Beta(32, 32) ratios stay near one half
    assert classes.tolist() == [0, 1, 2] and boxes.tolist() == [[0, 0, 2, 2], [1, 1, 3, 3], [0, 0, 4, 4]]


def test_affine_box_warp_matches_warping_the_four_corners():
    from lightyolo.data.transforms import perspective_matrix, warp_boxes

    rng = np.random.default_rng(0)
    boxes = rng.uniform(0, 200, (50, 4)).astype(np.float32)
    boxes[:, 2:] = boxes[:, :2] + rng.uniform(1, 50, (50, 2))
    matrix, _ = perspective_matrix((400, 400), (200, 200), replace(NO_JITTER, degrees=30, shear=10), rng)
    corners = np.ones((200, 3))
    corners[:, :2] = boxes[:, [0, 1, 2, 3, 0, 3, 2, 1]].reshape(200, 2)
    warped = (corners @ matrix.T)[:, :2].reshape(50, 8)
    xs, ys = warped[:, 0::2], warped[:, 1::2]
    expected = np.stack([xs.min(1), ys.min(1), xs.max(1), ys.max(1)], axis=1).clip(0, 200)
    np.testing.assert_allclose(warp_boxes(boxes, matrix, (200, 200)), expected, atol=1e-4)


def test_perspective_matrix_is_yolov5s_product_of_five_matrices_in_its_draw_order():
    hyp = AugmentHyp(degrees=20, shear=8, perspective=0.001, translate=0.2, scale=0.6)
    low = (-0.001, -0.001, -20, 0.4, -8, -8, 0.3, 0.3)
    high = (0.001, 0.001, 20, 1.6, 8, 8, 0.7, 0.7)
    for seed in range(5):
        matrix, scale = perspective_matrix((300, 200), (128, 96), hyp, np.random.default_rng(seed))
        px, py, angle, s, shx, shy, tx, ty = np.random.default_rng(seed).uniform(low, high)
        centre, persp, rotate, shear, translate = (np.eye(3) for _ in range(5))
        centre[:2, 2] = -100, -150
        persp[2, :2] = px, py
        a = np.radians(angle)
        rotate[:2, :2] = s * np.array([[np.cos(a), np.sin(a)], [-np.sin(a), np.cos(a)]])
        shear[0, 1], shear[1, 0] = np.tan(np.radians(shx)), np.tan(np.radians(shy))
        translate[:2, 2] = tx * 96, ty * 128
        assert scale == s
        np.testing.assert_allclose(matrix, translate @ shear @ rotate @ persp @ centre, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("up_down,left_right", [(False, True), (True, False), (True, True)])
def test_a_flip_folded_into_the_warp_equals_flipping_the_warped_image_and_boxes(up_down, left_right):
    rng = np.random.default_rng(3)
    img = rng.integers(0, 256, (90, 120, 3), dtype=np.uint8)
    boxes = np.array([[10, 20, 50, 60], [70, 5, 110, 40]], np.float32)
    matrix, _ = perspective_matrix((90, 120), (64, 80), replace(NO_JITTER, degrees=15, scale=0.3), rng)
    plain = warp_image(img, matrix, (64, 80), perspective=False)
    flip = flip_matrix((64, 80), up_down=up_down, left_right=left_right)
    folded = warp_image(img, flip @ matrix, (64, 80), perspective=False)
    expected = cv2.flip(plain, -1 if up_down and left_right else 0 if up_down else 1)
    diff = np.abs(folded.astype(int) - expected)
    assert diff.max() <= 1 and (diff > 0).mean() < 0.01  # OpenCV's fixed-point coordinates round apart
    x1, y1, x2, y2 = warp_boxes(boxes, matrix, (64, 80)).T
    if left_right:
        x1, x2 = 80 - x2, 80 - x1
    if up_down:
        y1, y2 = 64 - y2, 64 - y1
    np.testing.assert_allclose(warp_boxes(boxes, flip @ matrix, (64, 80)), np.stack([x1, y1, x2, y2], 1), atol=1e-4)


def test_a_padded_four_channel_mosaic_and_its_hsv_match_the_three_channel_ones():
    rng = np.random.default_rng(4)
    tiles = [rng.integers(0, 256, (int(rng.integers(30, 65)), int(rng.integers(30, 65)), 3), dtype=np.uint8)
             for _ in range(4)]
    boxes = [np.array([[1, 2, 20, 25]], np.float32), np.zeros((0, 4), np.float32),
             np.array([[0, 0, 10, 10], [5, 5, 28, 29]], np.float32), np.array([[3, 3, 9, 9]], np.float32)]
    region = (10, 20, 110, 100)
    rgb, rgb_boxes = mosaic4(tiles, boxes, 64, (60, 70), region=region)
    padded, padded_boxes = mosaic4(tiles, boxes, 64, (60, 70), region=region, out=np.zeros((128, 128, 4), np.uint8))
    assert padded.shape == (80, 100, 4) and np.array_equal(padded[..., :3], rgb)
    assert rgb_boxes.shape == (4, 4) and np.array_equal(rgb_boxes, padded_boxes)
    before = padded.copy()
    jittered = augment_hsv_into_new(padded, AugmentHyp(), np.random.default_rng(9))
    assert jittered.shape == rgb.shape and np.array_equal(padded, before)  # the input is left alone
    assert np.array_equal(jittered, augment_hsv(rgb.copy(), AugmentHyp(), np.random.default_rng(9)))
    untouched = augment_hsv_into_new(padded, replace(AugmentHyp(), hsv_h=0, hsv_s=0, hsv_v=0), np.random.default_rng(0))
    assert np.array_equal(untouched, rgb)
