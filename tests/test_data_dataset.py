"""DetectionDataset: eval letterbox and ratio_pad, rect batches, mosaic label consistency."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from lightyolo.data.dataset import DetectionDataset
from lightyolo.data.records import ImageRecord
from lightyolo.data.transforms import AugmentHyp
from lightyolo.data.yolo_format import read_yolo_split

from conftest import COCO128
RED = (250, 20, 20)


def _box_record(tmp_path: Path, name: str, size: tuple[int, int], box: tuple[int, int, int, int],
                image_id: int = 1) -> ImageRecord:
    """An image of `size` (w, h), dark background, one solid red box (pixel x1, y1, x2, y2)."""
    w, h = size
    pixels = np.full((h, w, 3), 30, dtype=np.uint8)
    x1, y1, x2, y2 = box
    pixels[y1:y2, x1:x2] = RED
    path = tmp_path / f"{name}.png"
    Image.fromarray(pixels).save(path)
    yolo = np.array([[(x1 + x2) / 2 / w, (y1 + y2) / 2 / h, (x2 - x1) / w, (y2 - y1) / h]], np.float32)
    return ImageRecord(image_id, path, w, h, np.array([0]), yolo)


def _red_mask(img: torch.Tensor) -> np.ndarray:
    rgb = img.permute(1, 2, 0).numpy().astype(int)
    return (rgb[..., 0] > 150) & (rgb[..., 1] < 90) & (rgb[..., 2] < 90)


def _pixel_boxes(labels: torch.Tensor, height: int, width: int) -> np.ndarray:
    cx, cy, w, h = labels[:, 2:].numpy().T
    return np.stack([(cx - w / 2) * width, (cy - h / 2) * height, (cx + w / 2) * width, (cy + h / 2) * height], 1)


def test_eval_letterbox_ratio_pad_maps_boxes_back_to_original_pixels(tmp_path):
    record = _box_record(tmp_path, "wide", (200, 100), (40, 20, 120, 70), image_id=7)
    img, labels, meta = DetectionDataset([record], 64, augment=False)[0]
    assert img.shape == (3, 64, 64) and img.dtype == torch.uint8
    assert meta["image_id"] == 7 and meta["orig_shape"] == (100, 200) and meta["path"].endswith("wide.png")
    (ry, rx), (pad_x, pad_y) = meta["ratio_pad"]
    assert (ry, rx, pad_x, pad_y) == (32 / 100, 64 / 200, 0.0, 16.0)
    box = _pixel_boxes(labels, 64, 64)[0]
    back = (box - [pad_x, pad_y, pad_x, pad_y]) / [rx, ry, rx, ry]
    np.testing.assert_allclose(back, [40, 20, 120, 70], atol=1e-3)
    ys, xs = np.nonzero(_red_mask(img))  # the red pixels sit where the label says
    np.testing.assert_allclose([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1], box, atol=1.01)


@pytest.mark.shared("data/coco128")
def test_rect_batches_share_a_stride_multiple_shape_like_yolov5():
    records, _ = read_yolo_split(COCO128 / "images/train2017", COCO128 / "labels/train2017", nc=80)
    dataset = DetectionDataset(records, 640, augment=False, rect=True, batch_size=32)
    # ceil(relative shape * 640 / 32 + 0.5) * 32 per batch of 32 (h, w), YOLOv5 val.py settings
    assert dataset.batch_shapes.tolist() == [[448, 672], [512, 672], [672, 672], [672, 608]]
    aspects = [r.height / r.width for r in dataset.records]
    assert aspects == sorted(aspects)
    for i in (0, 31, 32, 127):  # first/last of a batch share the batch's shape
        img, labels, meta = dataset[i]
        assert tuple(img.shape[1:]) == tuple(dataset.batch_shapes[i // 32])
        assert img.shape[1] % 32 == 0 and img.shape[2] % 32 == 0
        (ry, rx), (pad_x, pad_y) = meta["ratio_pad"]
        h0, w0 = meta["orig_shape"]
        assert round(h0 * ry + 2 * pad_y) == img.shape[1] and round(w0 * rx + 2 * pad_x) == img.shape[2]


@pytest.mark.parametrize("degrees", [0.0, 25.0])
def test_mosaic_labels_cover_the_coloured_pixels_and_stay_inside(tmp_path, degrees):
    records = [_box_record(tmp_path, f"r{i}", size, box, image_id=i) for i, (size, box) in enumerate([
        ((96, 64), (10, 10, 50, 40)), ((64, 96), (20, 30, 60, 90)), ((80, 80), (40, 5, 75, 35))])]
    hyp = AugmentHyp(hsv_h=0, hsv_s=0, hsv_v=0, degrees=degrees, flipud=0.5)
    dataset = DetectionDataset(records, 64, augment=True, hyp=hyp, cache_images=True)
    n_boxes = 0
    for seed in range(12):
        img, labels, meta = dataset[(seed % 3, seed)]
        assert img.shape == (3, 64, 64) and meta["ratio_pad"] is None
        boxes = _pixel_boxes(labels, 64, 64)
        assert (boxes >= -1e-4).all() and (boxes <= 64 + 1e-4).all()
        assert (boxes[:, 2] - boxes[:, 0] > 2).all() and (boxes[:, 3] - boxes[:, 1] > 2).all()
        red = _red_mask(img)
        covered = np.zeros_like(red)
        for x1, y1, x2, y2 in boxes:
            covered[max(int(y1) - 1, 0):int(np.ceil(y2)) + 1, max(int(x1) - 1, 0):int(np.ceil(x2)) + 1] = True
            if degrees == 0:  # an axis-aligned box stays filled with red
                inner = red[int(np.ceil(y1)) + 1:int(y2) - 1, int(np.ceil(x1)) + 1:int(x2) - 1]
                assert inner.size == 0 or inner.mean() > 0.95
        # red left unlabelled can only be what remains of a box cut and dropped (box_candidates:
        # under 10 % of its area left, or a side under 2 px): cut by the output's border it
        # touches that border; cut by the mosaic canvas's border (which the warp can move
        # inside the output) it is a sliver at most 2 px wide
        ys, xs = np.nonzero(red & ~covered)
        if len(xs):
            assert min(xs.min(), ys.min()) == 0 or max(xs.max(), ys.max()) == 63 or min(np.ptp(xs), np.ptp(ys)) < 2
            assert len(xs) < 0.1 * (60 * 40) * 1.5 ** 2  # 10 % of the largest box at scale 1.5
        n_boxes += len(boxes)
    assert n_boxes >= 12  # the checks above actually saw boxes


@pytest.mark.shared("data/coco128")
def test_same_index_and_seed_give_the_same_sample_and_collate_numbers_images():
    records, _ = read_yolo_split(COCO128 / "images/train2017", COCO128 / "labels/train2017", nc=80)
    dataset = DetectionDataset(records[:8], 128, augment=True)
    a, b, c = dataset[(3, 42)], dataset[(3, 42)], dataset[(3, 43)]
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert not torch.equal(a[0], c[0])
    images, targets, metas = DetectionDataset.collate([a, c])
    assert images.shape == (2, 3, 128, 128) and images.dtype == torch.uint8
    assert targets.shape == (len(a[1]) + len(c[1]), 6) and targets.dtype == torch.float32
    assert targets[:, 0].tolist() == [0.0] * len(a[1]) + [1.0] * len(c[1])
    assert [m["image_id"] for m in metas] == [a[2]["image_id"], c[2]["image_id"]]


def test_bad_arguments_are_one_line_errors():
    with pytest.raises(ValueError, match="records is empty"):
        DetectionDataset([], 64, augment=False)
    record = ImageRecord(0, Path("x.jpg"), 10, 10, np.zeros(0, np.int64), np.zeros((0, 4), np.float32))
    with pytest.raises(ValueError, match="img_size 100 must be a multiple of stride 32"):
        DetectionDataset([record], 100, augment=False)
