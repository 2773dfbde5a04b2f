"""Bad and unusual files, as users have them, on real files written into tmp_path (issue 14).

Each case asserts what the message names and what happens: the image left out (of training
and of the evaluation's ground truth) and counted, kept with the right size, or the run
refused before any training.
"""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from lightyolo import pipeline
from lightyolo.data.image_check import check_image, check_images
from lightyolo.data.specs import yolo_dataset
from lightyolo.eval.coco import coco_ground_truth
from lightyolo.store.client import Store

from conftest import COCO128, compose_config

SOURCE = COCO128 / "images" / "train2017"
REAL = ("000000000009", "000000000025", "000000000030")  # three labelled coco128 images
SPLIT = {"images": "images/train", "labels": "labels/train"}


def _coco128_subset(root: Path) -> tuple[Path, Path]:
    """root/images/train with three real coco128 JPEGs and their labels; (images, labels)."""
    images, labels = root / "images" / "train", root / "labels" / "train"
    images.mkdir(parents=True)
    labels.mkdir(parents=True)
    for stem in REAL:
        shutil.copy(SOURCE / f"{stem}.jpg", images)
        shutil.copy(COCO128 / "labels" / "train2017" / f"{stem}.txt", labels)
    return images, labels


def _spec(root: Path):
    return yolo_dataset(str(root), train=SPLIT, val=SPLIT, names=[str(i) for i in range(80)], cache_dir=None)


@pytest.mark.shared("data/coco128")
def test_truncated_jpeg_is_named_counted_and_left_out_of_training_and_ground_truth(tmp_path, caplog):
    images, labels = _coco128_subset(tmp_path)
    (images / "000000000036.jpg").write_bytes((SOURCE / "000000000036.jpg").read_bytes()[:2000])
    shutil.copy(COCO128 / "labels" / "train2017" / "000000000036.txt", labels)
    # PIL opens it without complaint: only a decode shows the damage
    with Image.open(images / "000000000036.jpg") as im:
        assert im.size == (481, 640)

    with caplog.at_level(logging.WARNING):
        spec = _spec(tmp_path)

    assert f"{images / '000000000036.jpg'}: truncated JPEG" in caplog.text
    assert "image left out (truncated_image)" in caplog.text
    assert spec.issues == {"train/truncated_image": 1, "val/truncated_image": 1}
    assert sorted(r.image_id for r in spec.train) == sorted(r.image_id for r in spec.val) == [9, 25, 30]
    gt = coco_ground_truth(spec.val, spec.category_ids, spec.names)
    assert {image["id"] for image in gt["images"]} == {9, 25, 30}
    assert {a["image_id"] for a in gt["annotations"]} == {9, 25, 30}


@pytest.mark.shared("data/coco128")
def test_jpeg_without_its_end_marker_that_still_decodes_is_kept(tmp_path):
    path = tmp_path / "trailing.jpg"
    path.write_bytes((SOURCE / "000000000009.jpg").read_bytes() + b"camera trailer")
    assert check_image(path).ok and (check_image(path).width, check_image(path).height) == (640, 480)


@pytest.mark.shared("data/coco128")
def test_zero_byte_and_non_image_files_are_named_and_left_out(tmp_path, caplog):
    images, _ = _coco128_subset(tmp_path)
    (images / "000000000050.jpg").write_bytes(b"")
    (images / "000000000051.png").write_bytes(b"GIF89a, not a png")
    with caplog.at_level(logging.WARNING):
        spec = _spec(tmp_path)
    assert f"{images / '000000000050.jpg'}: empty file (0 bytes); image left out (empty_image_file)" in caplog.text
    assert f"{images / '000000000051.png'}: unreadable image" in caplog.text
    assert spec.issues["train/empty_image_file"] == 1 and spec.issues["train/corrupt_image"] == 1
    assert len(spec.train) == 3


@pytest.mark.shared("data/coco128")
def test_cmyk_greyscale_rgba_and_a_png_named_jpg_are_kept_with_their_size_and_no_warning(tmp_path, caplog):
    images, labels = tmp_path / "images" / "train", tmp_path / "labels" / "train"
    images.mkdir(parents=True)
    labels.mkdir(parents=True)
    photo = Image.open(SOURCE / "000000000009.jpg").resize((64, 48))
    photo.convert("CMYK").save(images / "cmyk.jpg")
    photo.convert("L").save(images / "grey.jpg")
    photo.convert("RGBA").save(images / "rgba.png")
    photo.save(images / "png_named.jpg", format="PNG")
    for stem in ("cmyk", "grey", "rgba", "png_named"):
        (labels / f"{stem}.txt").write_text("0 0.5 0.5 0.2 0.2\n")

    with caplog.at_level(logging.WARNING):
        spec = _spec(tmp_path)

    assert caplog.text == "" and spec.issues == {}
    assert [(r.path.name, r.width, r.height) for r in spec.train] == [
        ("cmyk.jpg", 64, 48), ("grey.jpg", 64, 48), ("png_named.jpg", 64, 48), ("rgba.png", 64, 48)]
    for record in spec.train:  # what the loader (OpenCV) decodes has the recorded size, in colour
        assert cv2.imread(str(record.path)).shape == (record.height, record.width, 3)


def test_exif_rotated_jpeg_records_the_displayed_size_that_opencv_decodes(tmp_path):
    images, labels = tmp_path / "images" / "train", tmp_path / "labels" / "train"
    images.mkdir(parents=True)
    labels.mkdir(parents=True)
    stored = Image.new("RGB", (80, 40), (200, 30, 30))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90° clockwise for display
    stored.save(images / "rotated.jpg", exif=exif.tobytes())
    (labels / "rotated.txt").write_text("0 0.5 0.25 0.5 0.5\n")  # normalised to the displayed image

    record = _spec(tmp_path).train[0]

    assert (record.width, record.height) == (40, 80)  # stored 80x40, displayed 40x80
    assert cv2.imread(str(record.path)).shape == (80, 40, 3)
    assert record.boxes.tolist() == [[0.5, 0.25, 0.5, 0.5]]


@pytest.mark.shared("data/coco128")
def test_image_checks_are_cached_and_a_changed_file_is_checked_again(tmp_path):
    images, _ = _coco128_subset(tmp_path)
    paths = sorted(images.iterdir())
    cache = tmp_path / "cache"
    first = check_images(paths, cache)
    assert [c.ok for c in first] == [True] * 3 and len(list(cache.glob("images-*.npz"))) == 1
    paths[0].write_bytes(paths[0].read_bytes()[:2000])  # size changes: the entry is stale
    second = check_images(paths, cache)
    assert second[0].key == "truncated_image" and second[1:] == first[1:]
    assert check_images(paths, cache) == second  # read back from the cache


@pytest.mark.shared("data/coco128")
@pytest.mark.parametrize("case", ["all_bad", "empty_folder", "wrong_path"])
def test_an_empty_split_refuses_the_spec_naming_the_split_and_the_path(tmp_path, case):
    images, _ = _coco128_subset(tmp_path)
    val = {"images": "images/val", "labels": "labels/val"}
    if case == "all_bad":
        (tmp_path / "images" / "val").mkdir()
        for stem in REAL:
            (tmp_path / "images" / "val" / f"{stem}.jpg").write_bytes((images / f"{stem}.jpg").read_bytes()[:2000])
    elif case == "empty_folder":
        (tmp_path / "images" / "val").mkdir()
    expected = {"all_bad": r"every image was left out \({'truncated_image': 3}", "empty_folder": "no images found",
                "wrong_path": "is not a directory; the val split is empty"}[case]
    pattern = rf"^dataset\.val.*{tmp_path / 'images' / 'val'}.*{expected}"
    with pytest.raises((ValueError, FileNotFoundError), match=pattern):
        yolo_dataset(str(tmp_path), train=SPLIT, val=val, names=["a"] * 80, cache_dir=None)


@pytest.mark.shared("data/coco128")
def test_a_run_on_a_folder_with_a_truncated_jpeg_completes_and_tags_the_issue(tmp_path, caplog):
    """The issue's reproduction: it used to end in `OSError: image file is truncated`, no path."""
    images, labels = _coco128_subset(tmp_path / "data")
    (images / "000000000036.jpg").write_bytes((SOURCE / "000000000036.jpg").read_bytes()[:2000])
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    cfg = compose_config([
        "dataset=coco128", f"dataset.root={tmp_path / 'data'}", "dataset.train.images=images/train",
        "dataset.train.labels=labels/train", "dataset.val.images=images/train", "dataset.val.labels=labels/train",
        f"dataset.names=[{','.join(str(i) for i in range(80))}]", "dataset.cache_dir=null",
        "train.epochs=0", "train.img_size=64", "train.workers=0", "eval.batch_size=4",
        "bench.warmup=1", "bench.iters=2", f"mlflow.tracking_uri={uri}", "experiment=bad_files",
    ])
    with caplog.at_level(logging.WARNING):
        result = pipeline.run(cfg, output_dir=tmp_path / "out")

    assert f"{images / '000000000036.jpg'}: truncated JPEG" in caplog.text
    run = Store(uri).runs_frame("bad_files").set_index("run_id").loc[result.run_id]
    assert run["tags.status"] == "completed"
    assert json.loads(run["tags.data_issues"]) == {"train/truncated_image": 1, "val/truncated_image": 1}
    assert np.isfinite(run["metrics.val/map50_95"])
