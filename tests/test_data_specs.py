"""Dataset configs instantiate to DatasetSpecs; bad configs fail with one clear line."""

from __future__ import annotations

from pathlib import Path

import pytest
from hydra.utils import instantiate
from omegaconf import OmegaConf

from lightyolo.data.specs import read_class_names, yolo_dataset

REPO = Path(__file__).resolve().parents[1]
from conftest import SHARED


@pytest.mark.shared("data/coco128")
def test_coco128_yaml_gives_80_classes_and_the_same_128_images_for_train_and_val(monkeypatch):
    monkeypatch.chdir(REPO)  # dataset.root is relative to the launch directory
    cfg = OmegaConf.load(REPO / "conf" / "dataset" / "coco128.yaml")
    assert {"root", "name"} <= set(cfg)
    spec = instantiate(cfg)
    assert (spec.name, spec.nc, spec.names[0], spec.names[79]) == ("coco128", 80, "person", "toothbrush")
    assert len(spec.train) == len(spec.val) == 128
    assert spec.category_ids == list(range(80))
    assert spec.issues["val/orphan_label"] == 2 and spec.issues["val/missing_label_file"] == 2


def test_names_may_be_a_list_or_a_mapping(tmp_path):
    (tmp_path / "a.yaml").write_text("names: [cat, dog]\n")
    (tmp_path / "b.yaml").write_text("names:\n  1: dog\n  0: cat\n")
    assert read_class_names(tmp_path / "a.yaml") == read_class_names(tmp_path / "b.yaml") == ["cat", "dog"]
    (tmp_path / "c.yaml").write_text("nc: 2\n")
    with pytest.raises(ValueError, match="c.yaml: expected 'names:'"):
        read_class_names(tmp_path / "c.yaml")


@pytest.mark.shared("data/coco128")
def test_missing_root_or_split_keys_are_one_line_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="dataset.root"):
        yolo_dataset(str(tmp_path / "missing"), train={}, val={}, names=["a"])
    with pytest.raises(ValueError, match="dataset.train: expected a mapping with keys 'images' and 'labels'"):
        yolo_dataset(str(SHARED / "data" / "coco128"), train={"images": "images/train2017"}, val={}, names=["a"])
