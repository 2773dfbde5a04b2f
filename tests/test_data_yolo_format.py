"""The YOLO-format reader on the shared coco128 and on hand-made defective folders."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from lightyolo.data.yolo_format import read_yolo_split

from conftest import COCO128


@pytest.mark.shared("data/coco128")
def test_coco128_reads_128_images_929_boxes_and_reports_its_four_defects(caplog):
    with caplog.at_level(logging.WARNING, logger="lightyolo.data.yolo_format"):
        records, issues = read_yolo_split(COCO128 / "images/train2017", COCO128 / "labels/train2017", nc=80)
    assert len(records) == 128
    assert sum(len(r.classes) for r in records) == 929
    assert issues == {"orphan_label": 2, "missing_label_file": 2}
    backgrounds = sorted(r.path.stem for r in records if len(r.classes) == 0)
    assert backgrounds == ["000000000250", "000000000508"]
    assert "000000000656.txt" in caplog.text and "000000000659.txt" in caplog.text
    first = records[0]
    assert (first.image_id, first.width, first.height) == (9, 640, 480)
    assert first.boxes.dtype == np.float32 and first.classes.dtype == np.int64


def _write_image(path: Path, size=(40, 30)) -> None:
    Image.new("RGB", size, (10, 20, 30)).save(path)


def test_corrupt_image_and_malformed_lines_are_logged_counted_and_skipped(tmp_path, caplog):
    images, labels = tmp_path / "images", tmp_path / "labels"
    images.mkdir()
    labels.mkdir()
    _write_image(images / "good.jpg")
    (labels / "good.txt").write_text(
        "0 0.5 0.5 0.2 0.2\n"
        "1 0.5 0.5\n"                # wrong field count (line 2)
        "x 0.5 0.5 0.2 0.2\n"        # non-number (line 3)
        "7 0.5 0.5 0.2 0.2\n"        # class outside 0..2 (line 4)
        "1 1.5 0.5 0.2 0.2\n"        # coordinate outside 0..1 (line 5)
        "2 0.5 0.5 0.0 0.2\n"        # non-positive width (line 6)
        "0 0.5 0.5 0.2 0.2\n"        # duplicate of line 1 (line 7)
        "2 1.004 0.5 0.3 0.2\n")     # within tolerance: kept, clipped to 1
    (images / "broken.JPG").write_bytes(b"this is not a jpeg at all")
    (labels / "broken.txt").write_text("0 0.5 0.5 0.2 0.2\n")
    _write_image(images / "unlabelled.png")
    _write_image(images / "empty.bmp")
    (labels / "empty.txt").write_text("  \n\n")
    (labels / "lost.txt").write_text("0 0.5 0.5 0.2 0.2\n")

    with caplog.at_level(logging.WARNING, logger="lightyolo.data.yolo_format"):
        records, issues = read_yolo_split(images, labels, nc=3)

    assert issues == {"corrupt_image": 1, "malformed_label_line": 5, "duplicate_label_line": 1,
                      "orphan_label": 1, "missing_label_file": 1, "empty_label_file": 1}
    by_stem = {r.path.stem: r for r in records}
    assert sorted(by_stem) == ["empty", "good", "unlabelled"]
    assert by_stem["good"].classes.tolist() == [0, 2]
    np.testing.assert_allclose(by_stem["good"].boxes, [[0.5, 0.5, 0.2, 0.2], [1.0, 0.5, 0.3, 0.2]])
    assert (by_stem["good"].width, by_stem["good"].height) == (40, 30)
    assert len(by_stem["empty"].classes) == 0 and len(by_stem["unlabelled"].classes) == 0
    for line_no in (2, 3, 4, 5, 6):
        assert f"good.txt:{line_no}:" in caplog.text
    assert "broken.JPG" in caplog.text and "lost.txt" in caplog.text
    # non-numeric stems: ids are the index among the sorted image files (broken.JPG keeps 0)
    assert [r.image_id for r in records] == [1, 2, 3]


def test_exif_rotated_image_reports_displayed_size(tmp_path):
    images = tmp_path / "images"
    images.mkdir()
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees when displayed
    Image.new("RGB", (40, 30)).save(images / "1.jpg", exif=exif)
    records, issues = read_yolo_split(images, tmp_path / "labels", nc=1)
    assert (records[0].width, records[0].height) == (30, 40)
    assert records[0].image_id == 1
    assert issues == {"missing_label_file": 1}


def test_missing_images_directory_is_a_one_line_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="images directory not found"):
        read_yolo_split(tmp_path / "nope", tmp_path / "labels", nc=1)


def test_polygon_rows_become_their_boxes_and_are_reported_with_their_lines(tmp_path, caplog):
    images, labels = tmp_path / "images", tmp_path / "labels"
    images.mkdir()
    labels.mkdir()
    _write_image(images / "seg.jpg")
    (labels / "seg.txt").write_text(
        "1 0.1 0.2 0.5 0.2 0.4 0.6\n"            # triangle: box x 0.1..0.5, y 0.2..0.6
        "0 0.5 0.5 0.2 0.2\n"                    # a plain box beside it
        "2 0.2 0.2 0.4 0.2 0.4 0.4 0.2 0.4\n"    # square 0.2..0.4
        "1 0.1 0.2 0.5 0.2 0.4\n"                # 6 fields: neither a box nor a polygon
        "1 0.1 0.2 0.5 0.2 1.2 0.6\n")           # a vertex outside the image
    with caplog.at_level(logging.WARNING, logger="lightyolo.data.yolo_format"):
        records, issues = read_yolo_split(images, labels, nc=3)
    assert issues == {"polygon_label_line": 2, "malformed_label_line": 2}
    np.testing.assert_allclose(records[0].boxes, [[0.3, 0.4, 0.4, 0.4], [0.5, 0.5, 0.2, 0.2], [0.3, 0.3, 0.2, 0.2]],
                               atol=1e-6)
    assert records[0].classes.tolist() == [1, 0, 2]
    assert f"{labels / 'seg.txt'}: 2 polygon (segment) rows converted to their boxes (lines 1, 3)" in caplog.text
    assert f"{labels / 'seg.txt'}:4: expected 5 fields 'class cx cy w h' or a polygon" in caplog.text
    assert f"{labels / 'seg.txt'}:5: coordinate outside 0..1; line skipped" in caplog.text


def test_duplicate_and_out_of_range_rows_are_dropped_the_image_kept(tmp_path, caplog):
    images, labels = tmp_path / "images", tmp_path / "labels"
    images.mkdir()
    labels.mkdir()
    _write_image(images / "a.jpg")
    (labels / "a.txt").write_text("0 0.5 0.5 0.2 0.2\n0 0.5 0.5 0.2 0.2\n0 0.5 0.5 -0.1 0.2\n0 0.5 1.3 0.2 0.2\n")
    with caplog.at_level(logging.WARNING, logger="lightyolo.data.yolo_format"):
        records, issues = read_yolo_split(images, labels, nc=1)
    assert issues == {"duplicate_label_line": 1, "malformed_label_line": 2}
    assert len(records) == 1 and records[0].boxes.tolist() == [[0.5, 0.5, 0.20000000298023224, 0.20000000298023224]]
    assert f"{labels / 'a.txt'}:2: duplicate label line dropped" in caplog.text
    assert f"{labels / 'a.txt'}:3: coordinate outside 0..1" in caplog.text
    assert f"{labels / 'a.txt'}:4: coordinate outside 0..1" in caplog.text
