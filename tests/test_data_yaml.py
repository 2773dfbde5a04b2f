"""`dataset=yolo dataset.yaml=...`: YOLOv5 / Ultralytics data.yaml semantics on real files."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from hydra.utils import instantiate
from omegaconf import OmegaConf
from PIL import Image

from lightyolo.data.specs import data_yaml_dataset

from conftest import CONF_DIR


def _image(path: Path, size=(32, 24)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, (90, 120, 30)).save(path)
    return path


def _label(image: Path, text: str = "0 0.5 0.5 0.2 0.2\n") -> Path:
    """The label file YOLOv5 looks for: the last /images/ → /labels/, extension → .txt."""
    parts = list(image.parts)
    index = len(parts) - 1 - parts[::-1].index("images")
    label = Path(*parts[:index], "labels", *parts[index + 1:]).with_suffix(".txt")
    label.parent.mkdir(parents=True, exist_ok=True)
    label.write_text(text)
    return label


def test_path_is_relative_to_the_yaml_and_splits_may_be_dirs_lists_or_both(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # not the yaml's folder
    root = tmp_path / "project" / "data"
    for name in ("a", "b"):
        _label(_image(root / "images" / "train" / f"{name}.jpg"))
    _label(_image(root / "images" / "extra" / "deep" / "c.png"), "1 0.5 0.5 0.4 0.4\n")  # folders are recursive
    _label(_image(root / "images" / "val" / "v.jpg"))
    _label(_image(root / "images" / "test" / "t.jpg"))
    (root / "lists").mkdir()
    (root / "lists" / "val.txt").write_text("images/val/v.jpg\n")  # relative to the dataset root
    (root / "lists" / "test.txt").write_text("./../images/test/t.jpg\n")  # ./ : relative to the list itself
    yaml_file = tmp_path / "project" / "cfg" / "data.yaml"
    yaml_file.parent.mkdir()
    yaml_file.write_text("path: ../data\ntrain: [images/train, images/extra]\nval: lists/val.txt\n"
                         "test: lists/test.txt\nnc: 2\nnames: {0: cat, 1: dog}\n")

    spec = data_yaml_dataset(str(yaml_file), cache_dir=None)

    assert (spec.name, spec.names) == ("data", ["cat", "dog"])
    assert [r.path.name for r in spec.train] == ["c.png", "a.jpg", "b.jpg"]  # sorted by full path
    assert [r.classes.tolist() for r in spec.train] == [[1], [0], [0]]
    assert [r.path.name for r in spec.val] == ["v.jpg"] and [r.path.name for r in spec.test] == ["t.jpg"]
    assert spec.issues == {}


def test_no_path_means_the_yamls_folder_and_roboflows_dotdot_entries_resolve(tmp_path):
    # a Roboflow export: data.yaml beside train/ and valid/, entries written as ../train/images
    _label(_image(tmp_path / "train" / "images" / "x.jpg"))
    _label(_image(tmp_path / "valid" / "images" / "y.jpg"))
    (tmp_path / "data.yaml").write_text("train: ../train/images\nval: ../valid/images\nnc: 1\nnames: ['thing']\n")
    spec = data_yaml_dataset(str(tmp_path / "data.yaml"), cache_dir=None)
    assert spec.name == tmp_path.name and spec.test is None
    assert [r.path for r in spec.train] == [tmp_path / "train" / "images" / "x.jpg"]
    assert len(spec.val[0].classes) == 1


def test_root_replaces_the_yamls_path(tmp_path):
    _label(_image(tmp_path / "elsewhere" / "images" / "i.jpg"))
    (tmp_path / "data.yaml").write_text("path: /nonexistent\ntrain: images\nval: images\nnames: [a]\n")
    spec = data_yaml_dataset(str(tmp_path / "data.yaml"), root=str(tmp_path / "elsewhere"), cache_dir=None)
    assert spec.train[0].path == tmp_path / "elsewhere" / "images" / "i.jpg"


@pytest.mark.parametrize(("content", "message"), [
    ("train: images\nval: images\nnc: 3\nnames: [a, b]\n", "nc is 3 but names lists 2 classes"),
    ("train: images\nnames: [a]\n", "missing key 'val'"),
    ("val: images\nnames: [a]\n", "missing key 'train'"),
    ("train: images\nval: images\n", "missing key 'names'"),
    ("train: images\nval: images\nnames: {1: a}\n", "names: mapping keys must be 0..0"),
    ("train: images\nval: nowhere\nnames: [a]\n", "val: .*nowhere does not exist"),
    ("- a list\n", "expected a mapping with keys train, val, names"),
    ("train: [images\n", "not valid YAML"),
])
def test_a_bad_yaml_is_one_line_naming_the_file_and_the_key(tmp_path, content, message):
    _label(_image(tmp_path / "images" / "i.jpg"))
    (tmp_path / "data.yaml").write_text(content)
    with pytest.raises((ValueError, FileNotFoundError), match=rf"^{tmp_path / 'data.yaml'}: {message}") as err:
        data_yaml_dataset(str(tmp_path / "data.yaml"), cache_dir=None)
    assert "\n" not in str(err.value)


def test_missing_yaml_and_unset_key_are_one_line_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match=rf"dataset.yaml: {tmp_path / 'nope.yaml'} not found"):
        data_yaml_dataset(str(tmp_path / "nope.yaml"))
    assert OmegaConf.load(CONF_DIR / "dataset" / "yolo.yaml").yaml is None
    with pytest.raises(ValueError, match="^dataset.yaml: required: the path of a YOLOv5 data.yaml"):
        data_yaml_dataset(None)


def test_listed_image_that_is_missing_or_bad_is_named_and_an_empty_split_refused(tmp_path, caplog):
    _label(_image(tmp_path / "images" / "ok.jpg"))
    (tmp_path / "images" / "zero.jpg").write_bytes(b"")
    (tmp_path / "train.txt").write_text("images/ok.jpg\nimages/gone.jpg\nimages/zero.jpg\nnotes.md\n")
    (tmp_path / "val.txt").write_text("images/zero.jpg\n")
    (tmp_path / "data.yaml").write_text("train: train.txt\nval: images\nnames: [a]\n")
    with caplog.at_level(logging.WARNING):
        spec = data_yaml_dataset(str(tmp_path / "data.yaml"), cache_dir=None)
    assert f"{tmp_path / 'images' / 'gone.jpg'}: file not found; image left out (missing_image_file)" in caplog.text
    assert f"{tmp_path / 'train.txt'}:4: 'notes.md' is not an image file name" in caplog.text
    assert spec.issues["train/missing_image_file"] == 1 and spec.issues["train/empty_image_file"] == 1
    assert [r.path.name for r in spec.train] == ["ok.jpg"]

    (tmp_path / "data.yaml").write_text("train: train.txt\nval: val.txt\nnames: [a]\n")
    with pytest.raises(ValueError, match=rf"^{tmp_path / 'data.yaml'}: val: the split is empty: "
                                         rf"{tmp_path / 'val.txt'}: every image was left out"):
        data_yaml_dataset(str(tmp_path / "data.yaml"), cache_dir=None)


def test_yolo_yaml_instantiates_with_a_data_yaml(tmp_path):
    _label(_image(tmp_path / "ds" / "images" / "i.jpg"))
    (tmp_path / "ds" / "data.yaml").write_text("path: .\ntrain: images\nval: images\nnames: [a]\n")
    cfg = OmegaConf.load(CONF_DIR / "dataset" / "yolo.yaml")
    assert {"yaml", "root", "name", "cache_dir"} <= set(cfg)
    cfg.yaml, cfg.cache_dir = str(tmp_path / "ds" / "data.yaml"), str(tmp_path / "cache")
    spec = instantiate(cfg)
    assert (spec.name, len(spec.train), len(spec.val)) == ("ds", 1, 1)
    assert len(list((tmp_path / "cache").glob("images-*.npz"))) == 1
