"""The synthetic shapes generator: determinism, caching, split sizes and label validity."""

from __future__ import annotations

import hashlib
import multiprocessing
from pathlib import Path

import numpy as np
from hydra.utils import instantiate
from omegaconf import OmegaConf
from PIL import Image

from lightyolo.data.shapes import SHAPE_NAMES, ensure_shapes_dataset, render_image
from lightyolo.data.specs import shapes_dataset

REPO = Path(__file__).resolve().parents[1]
SMALL = dict(num_train=12, num_val=5, image_size=96, seed=3)


def _digest(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.md5(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def test_same_seed_gives_identical_files_and_other_seed_differs(tmp_path):
    a = ensure_shapes_dataset(tmp_path / "a", **SMALL)
    b = ensure_shapes_dataset(tmp_path / "b", **SMALL)
    c = ensure_shapes_dataset(tmp_path / "c", **{**SMALL, "seed": 4})
    assert a.name == b.name != c.name  # folder name is the parameter hash
    assert _digest(a) == _digest(b)
    assert len(_digest(a)) == 2 * (12 + 5) + 2  # images + labels + data.yaml + params.json
    assert _digest(a) != _digest(c)


def test_second_call_reuses_the_cached_folder(tmp_path):
    first = ensure_shapes_dataset(tmp_path, **SMALL)
    marker = first / "images" / "train" / "000000.jpg"
    mtime = marker.stat().st_mtime_ns
    second = ensure_shapes_dataset(tmp_path, **SMALL)
    assert second == first and marker.stat().st_mtime_ns == mtime
    assert [p.name for p in tmp_path.iterdir() if p.is_dir()] == [first.name]  # no temp dirs left


def test_processes_starting_generation_at_once_share_one_complete_folder(tmp_path):
    with multiprocessing.get_context("fork").Pool(2) as pool:
        folders = pool.starmap(_ensure, [(tmp_path, SMALL)] * 2)
    assert folders[0] == folders[1]
    assert [p.name for p in tmp_path.iterdir() if p.is_dir()] == [folders[0].name]
    assert _digest(folders[0]) == _digest(ensure_shapes_dataset(tmp_path / "alone", **SMALL))


def _ensure(root: Path, params: dict) -> Path:
    return ensure_shapes_dataset(root, **params)


def test_a_test_split_leaves_train_and_val_byte_identical_and_changes_the_folder_hash(tmp_path):
    without = ensure_shapes_dataset(tmp_path, **SMALL)
    with_test = ensure_shapes_dataset(tmp_path, **SMALL, num_test=4)
    assert with_test.name != without.name  # num_test is part of the parameter hash
    old, new = _digest(without), _digest(with_test)
    shared = {k for k in old if k.startswith(("images/", "labels/"))}
    assert len(shared) == 2 * (12 + 5) and {k: new[k] for k in shared} == {k: old[k] for k in shared}
    test_images = {k: v for k, v in new.items() if k.startswith("images/test/")}
    assert len(test_images) == 4
    # its own seed stream: test image i is not val image i
    assert all(v != old[k.replace("/test/", "/val/")] for k, v in test_images.items())
    assert "test: images/test" in (with_test / "data.yaml").read_text()
    assert _digest(ensure_shapes_dataset(tmp_path / "again", **SMALL, num_test=4)) == new


def test_spec_has_requested_split_sizes_and_valid_labels(tmp_path):
    spec = shapes_dataset(str(tmp_path), **SMALL, num_test=3)
    assert (spec.name, spec.names, len(spec.train), len(spec.val)) == ("shapes", list(SHAPE_NAMES), 12, 5)
    assert len(spec.test) == 3 and spec.test[0].path.parent.name == "test"
    assert shapes_dataset(str(tmp_path), **SMALL, num_test=0).test is None
    assert spec.issues.get("train/malformed_label_line", 0) == 0
    for record in spec.train + spec.val + spec.test:
        assert (record.width, record.height) == (96, 96)
        assert len(record.classes) <= 6
        assert set(record.classes.tolist()) <= set(range(len(SHAPE_NAMES)))
        if len(record.boxes):
            cx, cy, w, h = record.boxes.T
            assert (w > 0.05).all() and (h > 0.05).all()
            assert (cx - w / 2 >= 0).all() and (cx + w / 2 <= 1 + 1e-6).all()
            assert (cy - h / 2 >= 0).all() and (cy + h / 2 <= 1 + 1e-6).all()


def test_boxes_are_tight_around_the_visible_object():
    rng = np.random.default_rng(11)
    pixels, classes, boxes = render_image(rng, 128, max_objects=1)
    assert len(classes) == 1
    cx, cy, w, h = (np.array(boxes[0]) * 128)
    x1, y1, x2, y2 = round(cx - w / 2), round(cy - h / 2), round(cx + w / 2), round(cy + h / 2)
    # the object is one flat colour (plus noise) far from the background behind it: its pixels
    # reach every edge of the box and none lie in the 3-pixel ring around the box
    colour = np.median(pixels[round(cy) - 1:round(cy) + 2, round(cx) - 1:round(cx) + 2].reshape(-1, 3), axis=0)
    is_object = np.linalg.norm(pixels.astype(float) - colour, axis=2) < 40
    inside = is_object[y1:y2, x1:x2]
    assert inside[0].any() and inside[-1].any() and inside[:, 0].any() and inside[:, -1].any()
    ring = np.zeros_like(is_object)
    ring[max(y1 - 3, 0):y2 + 3, max(x1 - 3, 0):x2 + 3] = True
    ring[y1:y2, x1:x2] = False
    assert not (is_object & ring).any()


def test_default_yaml_instantiates_a_shapes_spec(tmp_path):
    # A global-package yaml: the dataset node sits beside the training recipe it carries.
    cfg = OmegaConf.load(REPO / "conf" / "dataset" / "shapes.yaml").dataset
    assert {"root", "name"} <= set(cfg)
    assert cfg.num_test == 100
    cfg.root, cfg.num_train, cfg.num_val, cfg.num_test, cfg.image_size = str(tmp_path), 4, 2, 2, 64
    spec = instantiate(cfg)
    assert (spec.name, len(spec.train), len(spec.val), len(spec.test), spec.nc) == ("shapes", 4, 2, 2, 4)
    with Image.open(spec.val[0].path) as im:
        assert im.size == (64, 64)
