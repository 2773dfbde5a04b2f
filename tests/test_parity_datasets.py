"""Datasets as users have them give the figures of the built-in configs (issue 14 acceptance).

- The shared coco128 described by a YOLOv5 data.yaml whose `train` is a .txt list and whose
  `val` is a directory indexes exactly the images and labels of `dataset=coco128`, and so
  evaluates yolov5n's official weights to the same mAP.
- COCO's own layout (root/train2017, root/val2017, root/annotations/instances_*.json), built
  in tmp_path from the shared coco128 with symlinks, indexes exactly what `dataset=coco128_json`
  does and evaluates to the figures of the COCO-json path (YOLOv5: 0.370 / 0.576 at 640).

The slow tests run `pipeline.run` as tests/test_parity_pipeline.py does.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hydra.utils import instantiate

from lightyolo import pipeline
from lightyolo.data.records import ImageRecord
from lightyolo.data.specs import read_class_names
from lightyolo.store.client import Store

from conftest import COCO128, YOLOV5N_WEIGHTS, compose_config

EXPERIMENT = "parity_datasets"


@pytest.fixture(scope="module")
def user_layouts(tmp_path_factory) -> dict[str, Path]:
    """{"data_yaml": the data.yaml, "coco_root": COCO's own layout}, both over the shared coco128."""
    tmp = tmp_path_factory.mktemp("layouts")
    (tmp / "coco128").symlink_to(COCO128)
    images = sorted((COCO128 / "images" / "train2017").glob("*.jpg"))
    (tmp / "train.txt").write_text("".join(f"./coco128/images/train2017/{p.name}\n" for p in images))
    names = read_class_names(COCO128 / "data.yaml")
    (tmp / "data.yaml").write_text("path: .\ntrain: train.txt\nval: coco128/images/train2017\n"
                                   f"nc: {len(names)}\nnames: {names!r}\n")
    coco = tmp / "coco"
    (coco / "annotations").mkdir(parents=True)
    for split in ("train", "val"):
        (coco / f"{split}2017").symlink_to(COCO128 / "images" / "train2017")
        (coco / "annotations" / f"instances_{split}2017.json").symlink_to(
            COCO128 / "annotations" / "instances_train2017.json")
    return {"data_yaml": tmp / "data.yaml", "coco_root": coco, "cache": tmp / "cache"}


def _dataset(*overrides: str):
    return instantiate(compose_config(["dataset.cache_dir=null", *overrides]).dataset)


def _index(records: list[ImageRecord]) -> list[tuple]:
    """What evaluation and training see of each record: the file, its size and its boxes."""
    return [(r.image_id, r.path.resolve(), r.width, r.height, r.classes.tolist(), r.boxes.tolist()) for r in records]


@pytest.mark.shared("data/coco128")
def test_data_yaml_with_a_txt_train_and_a_folder_val_indexes_exactly_coco128(user_layouts):
    ours = _dataset("dataset=yolo", f"dataset.yaml={user_layouts['data_yaml']}")
    builtin = _dataset("dataset=coco128", f"dataset.root={COCO128}")
    assert ours.names == builtin.names and ours.category_ids == builtin.category_ids
    assert _index(ours.train) == _index(builtin.train) and len(ours.train) == 128
    assert _index(ours.val) == _index(builtin.val)
    assert sum(len(r.classes) for r in ours.val) == 929
    # the folder split reports the same oddities; a .txt list has no label folder to scan for orphans
    assert {k: v for k, v in ours.issues.items() if k.startswith("val/")} == \
        {k: v for k, v in builtin.issues.items() if k.startswith("val/")}
    assert ours.issues["train/missing_label_file"] == 2 and ours.test is None


@pytest.mark.shared("data/coco128")
def test_cocos_own_layout_indexes_exactly_the_coco_json_path(user_layouts):
    ours = _dataset("dataset=coco", f"dataset.root={user_layouts['coco_root']}")
    builtin = _dataset("dataset=coco128_json", f"dataset.root={COCO128}")
    assert ours.category_ids == builtin.category_ids and ours.names == builtin.names
    assert _index(ours.train) == _index(builtin.train) and _index(ours.val) == _index(builtin.val)
    assert ours.val_coco_gt == builtin.val_coco_gt and len(ours.val_coco_gt["annotations"]) == 939
    assert ours.issues == builtin.issues == {} and ours.test is None


def _evaluated(tmp_path: Path, dataset: list[str]) -> pd.Series:
    """yolov5n's official weights evaluated at 640 (epochs=0), read back from the MLflow store."""
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    cfg = compose_config([
        "backbone=c3", "neck=pan", "operator=conv", "model.scale=n", f"model.weights={YOLOV5N_WEIGHTS}",
        "train.epochs=0", "train.img_size=640", "train.workers=0", "bench.warmup=1", "bench.iters=2",
        f"mlflow.tracking_uri={uri}", f"experiment={EXPERIMENT}", *dataset,
    ])
    result = pipeline.run(cfg, output_dir=tmp_path / "out")
    run = Store(uri).runs_frame(EXPERIMENT).set_index("run_id").loc[result.run_id]
    assert run["tags.status"] == "completed"
    return run


@pytest.mark.slow
@pytest.mark.shared("data/coco128", "weights/yolov5n.state_dict.pt")
def test_data_yaml_evaluates_yolov5n_to_the_map_of_dataset_coco128(user_layouts, tmp_path):
    ours = _evaluated(tmp_path / "yaml", ["dataset=yolo", f"dataset.yaml={user_layouts['data_yaml']}"])
    builtin = _evaluated(tmp_path / "builtin", ["dataset=coco128", f"dataset.root={COCO128}"])
    assert ours["metrics.val/map50_95"] == builtin["metrics.val/map50_95"]
    assert ours["metrics.val/map50"] == builtin["metrics.val/map50"]
    assert ours["metrics.val/map50_95"] == pytest.approx(0.367, abs=0.01)
    assert np.isfinite(ours["metrics.val/map75"])


@pytest.mark.slow
@pytest.mark.shared("data/coco128", "weights/yolov5n.state_dict.pt")
def test_cocos_own_layout_evaluates_yolov5n_to_the_coco_json_figures(user_layouts, tmp_path):
    ours = _evaluated(tmp_path / "layout", ["dataset=coco", f"dataset.root={user_layouts['coco_root']}",
                                            f"dataset.cache_dir={user_layouts['cache']}"])
    builtin = _evaluated(tmp_path / "builtin", ["dataset=coco128_json", f"dataset.root={COCO128}",
                                                f"dataset.cache_dir={user_layouts['cache']}"])
    assert ours["metrics.val/map50_95"] == builtin["metrics.val/map50_95"]
    assert ours["metrics.val/map50"] == builtin["metrics.val/map50"]
    # YOLOv5's val.py: 0.370 / 0.576 (shared/data/coco128/README.md); same tolerance as test_eval_coco_json
    assert ours["metrics.val/map50_95"] == pytest.approx(0.370, abs=0.01)
    assert ours["metrics.val/map50"] == pytest.approx(0.576, abs=0.01)
