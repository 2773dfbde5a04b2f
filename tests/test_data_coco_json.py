"""COCO-json reader: coco128 through its official json, the parse cache, and defective jsons
(reported, counted, nothing else lost) on small real files."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import numpy as np
import pytest
from hydra.utils import instantiate
from omegaconf import OmegaConf
from PIL import Image

from lightyolo.data.coco_json import read_coco_json
from lightyolo.data.specs import coco_dataset, read_class_names
from lightyolo.data.yolo_format import oriented_size, read_yolo_split

from conftest import COCO128, REPO

COCO128_JSON = COCO128 / "annotations" / "instances_train2017.json"
COCO128_IMAGES = COCO128 / "images" / "train2017"
# COCO 2017's ten unused category ids among 1..90.
UNUSED_CATEGORY_IDS = {12, 26, 29, 30, 45, 66, 68, 69, 71, 83}


@pytest.fixture(scope="module")
def coco128(tmp_path_factory):
    return read_coco_json(COCO128_IMAGES, COCO128_JSON, cache_dir=tmp_path_factory.mktemp("cache"))


@pytest.mark.shared("data/coco128")
def test_coco128_json_gives_128_images_929_training_boxes_and_keeps_939_annotations_for_eval(coco128):
    records, names, category_ids, gt, issues = coco128
    assert len(records) == 128 and not issues
    assert sum(len(r.classes) for r in records) == 929
    assert len(gt["images"]) == 128 and len(gt["annotations"]) == 939
    assert sum(a["iscrowd"] for a in gt["annotations"]) == 10
    assert [r.path.name for r in records] == sorted(r.path.name for r in records)
    backgrounds = sorted(r.path.stem for r in records if len(r.classes) == 0)
    assert backgrounds == ["000000000250", "000000000508"]


@pytest.mark.shared("data/coco128")
def test_coco128_classes_are_the_80_coco_names_on_ids_1_to_90_with_gaps(coco128):
    _, names, category_ids, gt, _ = coco128
    assert len(names) == len(category_ids) == 80
    assert names == read_class_names(COCO128 / "data.yaml")
    assert set(range(1, 91)) - set(category_ids) == UNUSED_CATEGORY_IDS
    assert category_ids == sorted(category_ids)
    assert [c["id"] for c in gt["categories"]] == category_ids


@pytest.mark.shared("data/coco128")
def test_coco128_training_boxes_equal_the_yolo_labels(coco128):
    """The YOLO labels are COCO's boxes minus crowd regions, normalised: the same targets."""
    records = coco128[0]
    yolo_records, _ = read_yolo_split(COCO128_IMAGES, COCO128 / "labels" / "train2017", 80)
    by_id = {r.image_id: r for r in records}
    assert set(by_id) == {r.image_id for r in yolo_records}
    for yolo in yolo_records:
        ours = by_id[yolo.image_id]
        assert (ours.width, ours.height) == (yolo.width, yolo.height) == oriented_size(yolo.path)
        expected = np.column_stack([yolo.classes, yolo.boxes])
        actual = np.column_stack([ours.classes, ours.boxes])
        np.testing.assert_allclose(actual[np.lexsort(actual.T[::-1])], expected[np.lexsort(expected.T[::-1])],
                                   atol=2e-6)


@pytest.mark.shared("data/coco128")
def test_ground_truth_keeps_the_json_segmentation_areas_and_crowd_flags(coco128):
    gt = coco128[3]
    official = {a["id"]: a for a in json.loads(COCO128_JSON.read_text())["annotations"]}
    for annotation in gt["annotations"]:
        source = official[annotation["id"]]
        assert annotation["area"] == source["area"] and annotation["bbox"] == source["bbox"]
        assert annotation["iscrowd"] == source["iscrowd"] and annotation["image_id"] == source["image_id"]
        assert "segmentation" not in annotation
    assert official[1774]["area"] == pytest.approx(18234.62355)


def test_second_load_reads_the_cache_and_a_changed_json_is_parsed_again(tmp_path, caplog):
    images, annotations = _small_dataset(tmp_path, [_annotation(1, 1, 1, [10, 10, 20, 20])])
    cache = tmp_path / "cache"
    first = read_coco_json(images, annotations, cache_dir=cache)
    assert len(list(cache.glob("*.npz"))) == 1
    with caplog.at_level(logging.INFO, logger="lightyolo.data.coco_json"):
        second = read_coco_json(images, annotations, cache_dir=cache)
    assert "read from cache" in caplog.text
    assert first[3] == second[3] and len(second[0][0].classes) == 1

    content = json.loads(annotations.read_text())
    content["annotations"].append(_annotation(2, 2, 1, [0, 0, 8, 8]))
    annotations.write_text(json.dumps(content))
    os.utime(annotations, ns=(1, 1))  # a different mtime even on coarse file systems
    third = read_coco_json(images, annotations, cache_dir=cache)
    assert len(third[3]["annotations"]) == 2 and len(list(cache.glob("*.npz"))) == 2


def test_cached_load_reports_the_same_defects_again(tmp_path, caplog):
    images, annotations = _small_dataset(tmp_path, [_annotation(1, 99, 1, [10, 10, 20, 20])])
    read_coco_json(images, annotations, cache_dir=tmp_path / "cache")
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        issues = read_coco_json(images, annotations, cache_dir=tmp_path / "cache")[4]
    assert issues == {"unknown_image_id": 1}
    assert "annotation 1: image_id 99" in caplog.text


def test_defects_are_warned_counted_and_nothing_else_is_lost(tmp_path, caplog):
    annotations = [
        _annotation(1, 1, 1, [10, 10, 20, 20]),           # good
        _annotation(2, 1, 3, [5, 5, 10, 10]),             # good, second class
        _annotation(3, 7, 1, [10, 10, 20, 20]),           # unknown image id
        _annotation(4, 1, 2, [10, 10, 20, 20]),           # unknown category id
        _annotation(5, 1, 1, [10, 10, 20]),               # 3 numbers
        _annotation(6, 1, 1, [10, 10, 0, 20]),            # zero width
        _annotation(7, 1, 1, [10, float("nan"), 5, 5]),   # NaN
        _annotation(8, 2, 1, [1, 1, 4, 4]),               # on the image whose file is missing
        _annotation(9, 3, 3, [40, 30, 10, 10]),           # good, on the third image
        {**_annotation(10, 1, 1, [1, 1, 4, 4]), "image_id": [1]},  # an image id that is not an id
    ]
    images, json_path = _small_dataset(tmp_path, annotations, missing_file=2)
    with caplog.at_level(logging.WARNING):
        records, names, category_ids, gt, issues = read_coco_json(images, json_path, cache_dir=None)
    assert issues == {"unknown_image_id": 2, "unknown_category_id": 1, "malformed_bbox": 3, "missing_image_file": 1}
    for named in ("annotation 3: image_id 7", "annotation 10: image_id [1]", "annotation 4 (image 1): category_id 2",
                  "annotation 5 (image 1): bbox [10, 10, 20]", "annotation 6 (image 1)", "annotation 7 (image 1)",
                  "image 2: file", "b.jpg not found"):
        assert named in caplog.text, named
    assert str(json_path) in caplog.text
    assert (names, category_ids) == (["one", "three"], [1, 3])
    assert [(r.image_id, r.classes.tolist()) for r in records] == [(1, [0, 1]), (3, [1])]
    np.testing.assert_allclose(records[0].boxes[0], [20 / 64, 20 / 48, 20 / 64, 20 / 48], rtol=1e-6)
    assert [image["id"] for image in gt["images"]] == [1, 3]
    assert [a["id"] for a in gt["annotations"]] == [1, 2, 9]


def test_boxes_are_clipped_to_the_image_and_boxes_outside_it_are_reported(tmp_path, caplog):
    annotations = [_annotation(1, 1, 1, [-10, 40, 30, 20]), _annotation(2, 1, 1, [70, 10, 5, 5])]
    images, json_path = _small_dataset(tmp_path, annotations)
    with caplog.at_level(logging.WARNING):
        records, _, _, gt, issues = read_coco_json(images, json_path, cache_dir=None)
    assert issues == {"degenerate_bbox": 1} and "annotation 2 (image 1)" in caplog.text
    # x -10..20 clipped to 0..20, y 40..60 clipped to 40..48 on the 64x48 image
    np.testing.assert_allclose(records[0].boxes, [[10 / 64, 44 / 48, 20 / 64, 8 / 48]], rtol=1e-6)
    assert len(gt["annotations"]) == 2  # pycocotools can still score against it


def test_crowd_regions_are_ground_truth_but_not_training_targets(tmp_path):
    crowd = {**_annotation(2, 1, 3, [0, 0, 30, 30]), "iscrowd": 1, "segmentation": {"counts": [0, 900], "size": [48, 64]}}
    images, json_path = _small_dataset(tmp_path, [_annotation(1, 1, 1, [10, 10, 20, 20]), crowd])
    records, _, _, gt, _ = read_coco_json(images, json_path, cache_dir=None)
    assert records[0].classes.tolist() == [0]
    assert [(a["id"], a["iscrowd"]) for a in gt["annotations"]] == [(1, 0), (2, 1)]


def test_zero_based_annotation_ids_are_renumbered_for_pycocotools(tmp_path, caplog):
    images, json_path = _small_dataset(tmp_path, [_annotation(0, 1, 1, [1, 1, 5, 5]), _annotation(1, 3, 1, [1, 1, 5, 5])])
    with caplog.at_level(logging.WARNING):
        gt, issues = read_coco_json(images, json_path, cache_dir=None)[3:]
    assert [a["id"] for a in gt["annotations"]] == [1, 2]
    assert issues == {"renumbered_annotation_ids": 1} and "renumbered" in caplog.text


@pytest.mark.parametrize(("content", "message"), [
    ({"images": [], "annotations": []}, "not a COCO detection json: missing key 'categories'"),
    ({"images": [], "categories": [{"id": 1, "name": "a"}]}, "not a COCO detection json: missing key 'annotations'"),
    ([1, 2], "not a COCO detection json: top level is a list"),
    ({"images": {}, "annotations": [], "categories": []}, "not a COCO detection json: not a list: 'images'"),
    ({"images": [], "annotations": [], "categories": [{"id": "1", "name": "a"}]}, "integer 'id' and a string 'name'"),
])
def test_a_json_that_is_not_coco_detection_is_a_one_line_error_naming_file_and_key(tmp_path, content, message):
    (tmp_path / "images").mkdir()
    path = tmp_path / "labels.json"
    path.write_text(json.dumps(content))
    with pytest.raises(ValueError) as error:
        read_coco_json(tmp_path / "images", path, cache_dir=None)
    assert str(error.value).startswith(f"{path}: ") and message in str(error.value)
    assert "\n" not in str(error.value)


@pytest.mark.shared("data/coco128")
def test_coco128_json_yaml_gives_the_json_categories_and_its_ground_truth(monkeypatch, tmp_path):
    monkeypatch.chdir(REPO)  # dataset.root is relative to the launch directory
    cfg = OmegaConf.load(REPO / "conf" / "dataset" / "coco128_json.yaml")
    cfg.cache_dir = str(tmp_path)
    spec = instantiate(cfg)
    assert (spec.name, spec.nc, len(spec.train), len(spec.val)) == ("coco128_json", 80, 128, 128)
    assert spec.category_ids[:3] == [1, 2, 3] and spec.category_ids[-1] == 90
    assert len(spec.val_coco_gt["annotations"]) == 939 and not spec.issues


def test_coco_yaml_detects_either_coco_2017_layout_and_says_which(tmp_path, caplog):
    cfg = OmegaConf.load(REPO / "conf" / "dataset" / "coco.yaml")
    assert (cfg.layout, cfg.train, cfg.val, cfg.test) == ("auto", None, None, None)
    for layout, image_dirs in (("coco", ("train2017", "val2017")),
                               ("yolov5", ("images/train2017", "images/val2017"))):
        root = tmp_path / layout
        _coco_layout(root, dict(zip(("train", "val"), image_dirs)), [_annotation(1, 1, 1, [10, 10, 20, 20])])
        caplog.clear()
        with caplog.at_level(logging.INFO, logger="lightyolo.data.specs"):
            spec = instantiate(cfg, root=str(root), cache_dir=None)
        assert (len(spec.train), len(spec.val), spec.test) == (3, 3, None)
        assert spec.train[0].path == root / image_dirs[0] / "a.jpg"
        assert len(spec.val_coco_gt["annotations"]) == 1
        said = "COCO's own layout (train2017" if layout == "coco" else "YOLOv5's layout (images/train2017"
        assert said in caplog.text.replace("{train,val}", "train")


def test_coco_test_split_is_used_when_its_instances_json_exists(tmp_path):
    _coco_layout(tmp_path, {split: f"{split}2017" for split in ("train", "val", "test")},
                 [_annotation(1, 2, 3, [10, 10, 20, 20])])
    spec = coco_dataset(str(tmp_path), cache_dir=None)
    assert len(spec.test) == 3 and spec.test[0].path == tmp_path / "test2017" / "a.jpg"
    assert spec.test_coco_gt["annotations"][0]["category_id"] == 3


def test_a_root_with_neither_coco_layout_is_one_line_listing_both(tmp_path):
    (tmp_path / "train2017").mkdir()
    with pytest.raises(FileNotFoundError) as err:
        coco_dataset(str(tmp_path), cache_dir=None)
    message = str(err.value)
    assert "\n" not in message and message.startswith(f"dataset.root: {tmp_path} has no COCO 2017 layout")
    for expected in (f"{tmp_path}/{{train,val}}2017", f"{tmp_path}/images/{{train,val}}2017",
                     f"{tmp_path}/annotations/instances_{{train,val}}2017.json"):
        assert expected in message
    with pytest.raises(FileNotFoundError, match="dataset.root"):
        coco_dataset("/nonexistent/coco")


def test_a_truncated_image_is_left_out_of_records_and_of_the_json_ground_truth(tmp_path, caplog):
    images, json_path = _small_dataset(tmp_path, [_annotation(1, 1, 1, [10, 10, 20, 20]),
                                                  _annotation(2, 2, 1, [10, 10, 20, 20])])
    noise = np.random.default_rng(0).integers(0, 255, (48, 64, 3), dtype=np.uint8)
    Image.fromarray(noise).save(images / "b.jpg")
    (images / "b.jpg").write_bytes((images / "b.jpg").read_bytes()[:1500])  # the header stays whole
    with caplog.at_level(logging.WARNING):
        records, _, _, gt, issues = read_coco_json(images, json_path, cache_dir=None)
    assert f"image 2: {images / 'b.jpg'}: truncated JPEG" in caplog.text
    assert issues == {"truncated_image": 1}
    assert [r.image_id for r in records] == [1, 3]
    assert [i["id"] for i in gt["images"]] == [1, 3] and [a["image_id"] for a in gt["annotations"]] == [1]


def test_an_image_whose_size_is_not_the_jsons_is_named_and_left_out(tmp_path, caplog):
    images, json_path = _small_dataset(tmp_path, [])
    Image.new("RGB", (48, 64)).save(images / "c.jpg")
    with caplog.at_level(logging.WARNING):
        records, _, _, gt, issues = read_coco_json(images, json_path, cache_dir=None)
    assert f"image 3: {images / 'c.jpg'} is 48x64 as displayed" in caplog.text and "json says 64x48" in caplog.text
    assert issues == {"image_size_mismatch": 1} and [r.image_id for r in records] == [1, 2]


@pytest.mark.shared("data/coco128")
def test_limit_keeps_the_first_images_and_their_ground_truth(tmp_path):
    paths = {"images": "images/train2017", "annotations": "annotations/instances_train2017.json"}
    spec = coco_dataset(str(COCO128), train=paths, val=paths, limit=5, cache_dir=str(tmp_path))
    assert len(spec.train) == len(spec.val) == 5
    kept = {r.image_id for r in spec.val}
    assert {image["id"] for image in spec.val_coco_gt["images"]} == kept
    assert {a["image_id"] for a in spec.val_coco_gt["annotations"]} <= kept
    assert len(spec.val_coco_gt["annotations"]) >= sum(len(r.classes) for r in spec.val)


def test_split_keys_and_category_lists_are_checked(tmp_path):
    images, json_path = _small_dataset(tmp_path, [])
    split = {"images": "images", "annotations": json_path.name}
    with pytest.raises(ValueError, match="dataset.val: expected a mapping with keys 'images' and 'annotations'"):
        coco_dataset(str(tmp_path), train=split, val={"images": "images", "labels": "labels"}, cache_dir=None)
    other = json.loads(json_path.read_text())
    other["categories"] = other["categories"][:1]
    (tmp_path / "other.json").write_text(json.dumps(other))
    with pytest.raises(ValueError, match="dataset.val.annotations: its categories differ"):
        coco_dataset(str(tmp_path), train=split, val={"images": "images", "annotations": "other.json"}, cache_dir=None)
    with pytest.raises(ValueError, match="dataset.limit: expected null or a positive integer"):
        coco_dataset(str(tmp_path), train=split, val=split, limit=0, cache_dir=None)


def _annotation(ann_id: int, image_id: int, category_id: int, bbox: list[float]) -> dict:
    area = bbox[2] * bbox[3] if len(bbox) == 4 else 0.0
    return {"id": ann_id, "image_id": image_id, "category_id": category_id, "bbox": bbox, "area": area, "iscrowd": 0}


def _small_dataset(tmp_path: Path, annotations: list[dict], missing_file: int | None = None) -> tuple[Path, Path]:
    """Three real 64x48 JPEGs (ids 1..3: a.jpg, b.jpg, c.jpg), categories 1 'one' and 3 'three'."""
    images = tmp_path / "images"
    images.mkdir(exist_ok=True)
    entries = []
    for image_id, stem in ((1, "a"), (2, "b"), (3, "c")):
        if image_id != missing_file:
            Image.new("RGB", (64, 48), (image_id * 60, 90, 30)).save(images / f"{stem}.jpg")
        entries.append({"id": image_id, "file_name": f"{stem}.jpg", "width": 64, "height": 48})
    content = {"images": entries, "annotations": annotations,
               "categories": [{"id": 3, "name": "three"}, {"id": 1, "name": "one"}]}
    path = tmp_path / "instances.json"
    path.write_text(json.dumps(content))
    return images, path


def _coco_layout(root: Path, image_dirs: dict[str, str], annotations: list[dict]) -> None:
    """root/<image_dirs[split]> (three JPEGs) and root/annotations/instances_<split>2017.json."""
    for split, image_dir in image_dirs.items():
        stage = root.parent / f".stage-{root.name}-{split}"
        stage.mkdir(parents=True)
        images, json_path = _small_dataset(stage, annotations)
        (root / image_dir).parent.mkdir(parents=True, exist_ok=True)
        (root / "annotations").mkdir(parents=True, exist_ok=True)
        images.rename(root / image_dir)
        json_path.rename(root / "annotations" / f"instances_{split}2017.json")
