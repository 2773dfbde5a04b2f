"""The OpenCV augmentation path on real JPEGs: boxes stay on their objects through mosaic +
affine + flips, HSV gains follow YOLOv5's definition, corrupt images are named and replaced."""

from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import pytest

from lightyolo.data.dataset import DetectionDataset
from lightyolo.data.loader import build_dataloader
from lightyolo.data.records import ImageRecord
from lightyolo.data.transforms import (AugmentHyp, augment_hsv, mosaic4, perspective_matrix, shifted_source,
                                       source_region, warp_image)

# one colour (RGB) per object, far apart, so each object's pixels can be found again
COLOURS = [(230, 30, 30), (30, 220, 30), (40, 40, 230), (230, 230, 40), (220, 40, 220), (40, 220, 220)]
BACKGROUND = (90, 90, 90)


def _write_jpeg(path: Path, rgb: np.ndarray) -> None:
    assert cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 95])


def _rectangles_dataset(tmp_path: Path) -> list[ImageRecord]:
    """Three JPEGs with two coloured rectangles each; class = colour index, labels where drawn."""
    layouts = [((256, 192), [(20, 20, 120, 110), (140, 60, 240, 170)]),
               ((192, 256), [(30, 30, 150, 100), (40, 130, 170, 230)]),
               ((224, 224), [(15, 120, 110, 210), (120, 15, 210, 100)])]
    records = []
    for i, ((w, h), rects) in enumerate(layouts):
        pixels = np.full((h, w, 3), BACKGROUND, np.uint8)
        classes, boxes = [], []
        for j, (x1, y1, x2, y2) in enumerate(rects):
            cls = 2 * i + j
            pixels[y1:y2, x1:x2] = COLOURS[cls]
            classes.append(cls)
            boxes.append([(x1 + x2) / 2 / w, (y1 + y2) / 2 / h, (x2 - x1) / w, (y2 - y1) / h])
        _write_jpeg(tmp_path / f"im{i}.jpg", pixels)
        records.append(ImageRecord(i, tmp_path / f"im{i}.jpg", w, h, np.array(classes), np.array(boxes, np.float32)))
    return records


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    inter = max(0.0, min(a[2], b[2]) - max(a[0], b[0])) * max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


def test_every_kept_box_covers_its_rectangle_after_mosaic_affine_and_flips(tmp_path):
    hyp = AugmentHyp(hsv_h=0, hsv_s=0, hsv_v=0, flipud=0.5, fliplr=0.5, translate=0.1, scale=0.5, mosaic=1.0)
    size = 256
    dataset = DetectionDataset(_rectangles_dataset(tmp_path), size, augment=True, hyp=hyp, cache_images="ram")
    checked = 0
    for seed in range(16):
        img, labels, _ = dataset[(seed % 3, seed)]
        rgb = img.permute(1, 2, 0).numpy().astype(int)
        for cls, cx, cy, w, h in labels[:, 1:].numpy():
            box = np.array([(cx - w / 2) * size, (cy - h / 2) * size, (cx + w / 2) * size, (cy + h / 2) * size])
            # the object's pixels near the box (a margin for bilinear edges); the same image may
            # appear twice in a mosaic, but its copies never lie within 3 px of each other
            x1, y1 = max(int(box[0]) - 3, 0), max(int(box[1]) - 3, 0)
            window = rgb[y1:int(np.ceil(box[3])) + 3, x1:int(np.ceil(box[2])) + 3]
            mask = np.abs(window - COLOURS[int(cls)]).max(axis=2) < 60
            ys, xs = np.nonzero(mask)
            assert len(xs), f"seed {seed}: no pixels of class {int(cls)} under its box {box}"
            found = np.array([xs.min() + x1, ys.min() + y1, xs.max() + 1 + x1, ys.max() + 1 + y1], float)
            if min(box[2] - box[0], box[3] - box[1]) >= 8:
                assert _iou(box, found) >= 0.9, (seed, int(cls), box, found)
                checked += 1
            else:  # a sliver left at the border: pixel quantisation rules out an IoU test, not containment
                assert (found[:2] >= box[:2] - 1).all() and (found[2:] <= box[2:] + 1).all(), (seed, box, found)
    assert checked >= 40  # the loop really saw boxes


def test_composing_only_the_region_the_warp_reads_gives_the_full_canvas_result():
    rng = np.random.default_rng(0)
    size = 128
    tiles = [rng.integers(0, 256, (int(rng.integers(60, 129)), int(rng.integers(60, 129)), 3), dtype=np.uint8)
             for _ in range(4)]
    no_boxes = [np.zeros((0, 4), np.float32)] * 4
    hyp = AugmentHyp(degrees=10, shear=5, perspective=0.0005)
    for seed in range(8):
        draws = np.random.default_rng(seed)
        centre = tuple(int(v) for v in draws.integers(size // 2, 3 * size // 2, 2))
        matrix, _ = perspective_matrix((2 * size, 2 * size), (size, size), hyp, draws)
        full, _ = mosaic4(tiles, no_boxes, size, centre)
        expected = warp_image(full, matrix, (size, size), perspective=True)
        region = source_region(matrix, (size, size), (2 * size, 2 * size))
        part, _ = mosaic4(tiles, no_boxes, size, centre, region=region)
        got = warp_image(part, shifted_source(matrix, region[0], region[1]), (size, size), perspective=True)
        diff = np.abs(got.astype(int) - expected)
        assert diff.max() <= 1 and (diff > 0).mean() < 1e-3, seed


def _hsv_of(rgb: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(rgb, cv2.COLOR_RGB2HSV).reshape(-1, 3)[0].astype(float)


def test_hsv_gains_are_uniform_in_one_plus_minus_the_hyperparameters():
    # a flat colour whose H, S, V stay clear of wrapping and clipping for every gain drawn
    base_hsv = np.array([[[100, 140, 160]]], np.uint8)
    flat = np.repeat(np.repeat(cv2.cvtColor(base_hsv, cv2.COLOR_HSV2RGB), 8, 0), 8, 1)
    h0, s0, v0 = _hsv_of(flat)
    hyp = AugmentHyp(hsv_h=0.3, hsv_s=0.5, hsv_v=0.4)
    rng = np.random.default_rng(0)
    gains = np.array([_hsv_of(augment_hsv(flat, hyp, rng)) / (h0, s0, v0) for _ in range(600)])
    for column, g in enumerate((hyp.hsv_h, hyp.hsv_s, hyp.hsv_v)):
        measured = gains[:, column]
        quantum = 2.5 / (h0, s0, v0)[column]  # 8-bit HSV round trip
        assert measured.min() >= 1 - g - quantum and measured.max() <= 1 + g + quantum
        assert measured.min() < 1 - 0.9 * g and measured.max() > 1 + 0.9 * g  # the whole range is used
        assert abs(measured.mean() - 1) < 0.03
        assert measured.std() == pytest.approx(g / np.sqrt(3), rel=0.12)  # uniform, not e.g. normal


def test_zero_hsv_gains_leave_the_image_untouched_and_inplace_matches_a_copy():
    img = np.random.default_rng(1).integers(0, 256, (16, 16, 3), dtype=np.uint8)
    assert augment_hsv(img, replace(AugmentHyp(), hsv_h=0, hsv_s=0, hsv_v=0), np.random.default_rng(0)) is img
    copy = augment_hsv(img, AugmentHyp(), np.random.default_rng(5))
    in_place = img.copy()
    assert augment_hsv(in_place, AugmentHyp(), np.random.default_rng(5), inplace=True) is in_place
    assert np.array_equal(copy, in_place)


@pytest.mark.parametrize("cache", [False, "ram", "disk"])
def test_an_image_that_went_bad_after_indexing_is_named_and_replaced(tmp_path, caplog, cache):
    records = _rectangles_dataset(tmp_path)
    bad = records[1].path
    bad.write_bytes(bad.read_bytes()[: len(bad.read_bytes()) // 2])  # truncated after indexing
    with caplog.at_level(logging.WARNING, logger="lightyolo.data.dataset"):
        dataset = DetectionDataset(records, 128, augment=True, cache_images=cache, cache_dir=tmp_path / "cache")
        loader = build_dataloader(dataset, batch_size=3, workers=0, shuffle=False, seed=0)
        imgs, targets, metas = next(iter(loader))
    assert imgs.shape == (3, 3, 128, 128) and len(targets)
    messages = [r.getMessage() for r in caplog.records if "corrupt image" in r.getMessage()]
    assert len(messages) == 1 and str(bad) in messages[0] and "truncated JPEG" in messages[0]
    assert dataset.corrupt == {1: "truncated JPEG (no end-of-image marker)"}


def test_evaluation_names_a_corrupt_image_and_scores_it_as_grey(tmp_path, caplog):
    records = _rectangles_dataset(tmp_path)
    records[2].path.write_bytes(b"not an image at all")
    with caplog.at_level(logging.WARNING, logger="lightyolo.data.dataset"):
        img, labels, meta = DetectionDataset(records, 128, augment=False)[2]
    assert any(str(records[2].path) in r.getMessage() and "cannot decode" in r.getMessage() for r in caplog.records)
    assert meta["image_id"] == 2 and len(labels) == 2 and (img.numpy() == 114).all()
