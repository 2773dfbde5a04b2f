"""Images are decoded by their content, never their suffix (issue 24, case 1).

A JPEG with bytes after its end-of-image marker, or a PNG saved under a `.jpg` name, used to
pass the index check (which reads content) and then be scored as a grey image by the loader
(which decided by suffix): coco128 with 16 such files gave mAP50-95 0.247 instead of 0.282.
The files here are real coco128 JPEGs, changed the way phones, web tools and scrapers do.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from lightyolo import pipeline
from lightyolo.data.image_check import check_images
from lightyolo.data.specs import yolo_dataset
from lightyolo.eval.coco import coco_ground_truth
from lightyolo.data.transforms import decode
from lightyolo.store.client import Store

from conftest import COCO128, YOLOV5N_WEIGHTS, compose_config

SPLIT = {"images": "images/train", "labels": "labels/train"}
TRAILER = b"\x00camera trailer: bytes after the end-of-image marker"


def _copy_split(root: Path, stems: list[str]) -> Path:
    """root/images/train + labels/train with coco128's files of `stems`; returns the images dir."""
    images, labels = root / "images" / "train", root / "labels" / "train"
    images.mkdir(parents=True)
    labels.mkdir(parents=True)
    for stem in stems:
        shutil.copy(COCO128 / "images" / "train2017" / f"{stem}.jpg", images)
        label = COCO128 / "labels" / "train2017" / f"{stem}.txt"
        if label.exists():
            shutil.copy(label, labels)
    return images


def _disguise(images: Path, stems: list[str]) -> None:
    """Half of `stems` get bytes after their end marker, the other half become PNGs named .jpg
    (lossless: the PNG holds exactly the pixels OpenCV decoded from the JPEG)."""
    for i, stem in enumerate(stems):
        path = images / f"{stem}.jpg"
        if i % 2 == 0:
            path.write_bytes(path.read_bytes() + TRAILER)
        else:
            ok, png = cv2.imencode(".png", cv2.imread(str(path)))
            assert ok
            path.write_bytes(png.tobytes())


def _stems(n: int) -> list[str]:
    return sorted(p.stem for p in (COCO128 / "images" / "train2017").glob("*.jpg"))[:n]


def _evaluate(root: Path, tmp_path: Path, name: str, img_size: int) -> tuple[float, dict]:
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    cfg = compose_config([
        "dataset=coco128", f"dataset.root={root}", "dataset.train.images=images/train",
        "dataset.train.labels=labels/train", "dataset.val.images=images/train", "dataset.val.labels=labels/train",
        f"dataset.names=[{','.join(str(i) for i in range(80))}]", "dataset.cache_dir=null",
        f"model.weights={YOLOV5N_WEIGHTS}", "train.epochs=0", f"train.img_size={img_size}",
        "train.workers=0", "train.threads=1", "bench.warmup=1", "bench.iters=2",
        f"mlflow.tracking_uri={uri}", f"experiment={name}",
    ])
    result = pipeline.run(cfg, output_dir=tmp_path / name)
    run = Store(uri).runs_frame(name).set_index("run_id").loc[result.run_id]
    issues = json.loads(run["tags.data_issues"]) if isinstance(run.get("tags.data_issues"), str) else {}
    return result.metrics["map50_95"], issues


@pytest.mark.shared("data/coco128")
def test_trailing_bytes_and_png_named_jpg_decode_to_the_same_pixels_and_pass_the_check(tmp_path):
    stems = _stems(6)
    original = _copy_split(tmp_path / "original", stems)
    changed = _copy_split(tmp_path / "changed", stems)
    _disguise(changed, stems)
    assert (changed / f"{stems[1]}.jpg").read_bytes()[:4] == b"\x89PNG"  # really a PNG now

    checks = check_images(sorted(changed.iterdir()))

    assert [c.key for c in checks] == [""] * 6
    for stem in stems:
        np.testing.assert_array_equal(decode(changed / f"{stem}.jpg"), decode(original / f"{stem}.jpg"))


@pytest.mark.shared("data/coco128", "weights/yolov5n.state_dict.pt")
def test_coco128_with_16_disguised_images_keeps_map50_95_0_282_at_320(tmp_path):
    """Two evaluations of coco128 at 320 (24 s on a loaded 2-core machine: not marked slow)."""
    stems = _stems(128)
    _copy_split(tmp_path / "original", stems)
    _disguise(_copy_split(tmp_path / "changed", stems), stems[:16])

    untouched, untouched_issues = _evaluate(tmp_path / "original", tmp_path, "original", 320)
    disguised, disguised_issues = _evaluate(tmp_path / "changed", tmp_path, "changed", 320)

    assert untouched == pytest.approx(0.282, abs=0.0005)
    assert disguised == pytest.approx(untouched, abs=1e-9)
    assert disguised_issues == untouched_issues


@pytest.mark.shared("data/coco128")
def test_a_tiff_that_opencv_cannot_decode_is_named_counted_and_left_out_of_training_and_ground_truth(tmp_path):
    images = _copy_split(tmp_path, _stems(2))
    pixels = np.random.default_rng(0).random((48, 64), dtype=np.float32)
    Image.fromarray(pixels, "F").save(images / "float.tif")  # PIL opens it; OpenCV cannot
    (tmp_path / "labels" / "train" / "float.txt").write_text("0 0.5 0.5 0.2 0.2\n")
    assert cv2.imread(str(images / "float.tif")) is None

    spec = yolo_dataset(str(tmp_path), train=SPLIT, val=SPLIT, names=[str(i) for i in range(80)], cache_dir=None)

    assert spec.issues == {"train/unsupported_image_format": 1, "val/unsupported_image_format": 1}
    assert [r.path.name for r in spec.train] == [f"{stem}.jpg" for stem in _stems(2)]
    gt = coco_ground_truth(spec.val, spec.category_ids, spec.names)
    assert len(gt["images"]) == 2
