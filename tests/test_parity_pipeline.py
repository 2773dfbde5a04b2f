"""YOLOv5 parity through the real pipeline (issue 6): `pipeline.run` on a composed config, a
real MLflow store in tmp_path, figures read back with `runs_frame`.

The acceptance command `backbone=c3 neck=pan operator=conv model.scale=n
model.weights=<yolov5n> train.epochs=0 dataset=coco128 train.img_size=640` must log YOLOv5
val.py's pycocotools figures on coco128 (mAP50-95 0.367, mAP50 0.571 against the YOLO labels,
../shared/weights/README.md); at 320 the figures drop; one epoch of fine-tuning at 320 must
not collapse. The non-slow tests pin the partial weight transfer onto another cell and
coco128's data oddities (2 orphan label files, 2 background images) as the pipeline logs them.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pandas as pd
import pytest

from lightyolo import pipeline
from lightyolo.store.client import Store

from conftest import COCO128, YOLOV5N_WEIGHTS, compose_config

EXPERIMENT = "parity"
ORPHAN_LABELS = ("000000000656.txt", "000000000659.txt")
BACKGROUND_IDS = (250, 508)


def coco128_overrides(tracking_uri: str, img_size: int, *extra: str) -> list[str]:
    """yolov5n weights on coco128 at `img_size`, evaluated like YOLOv5's val.py."""
    return [
        "backbone=c3", "neck=pan", "operator=conv", "model.scale=n",
        f"model.weights={YOLOV5N_WEIGHTS}", "train.epochs=0", "dataset=coco128",
        f"dataset.root={COCO128}", f"train.img_size={img_size}", "train.workers=0",
        "bench.warmup=1", "bench.iters=2", f"mlflow.tracking_uri={tracking_uri}",
        f"experiment={EXPERIMENT}", *extra,
    ]


def logged_run(tracking_uri: str, run_id: str) -> pd.Series:
    """The run's MLflow row (tags.*, params.*, metrics.*), read back from the store."""
    return Store(tracking_uri).runs_frame(EXPERIMENT).set_index("run_id").loc[run_id]


@pytest.fixture(scope="module")
def evaluated_checkpoint(tmp_path_factory) -> dict[int, pd.Series]:
    """The acceptance command at 640 and at 320, one MLflow store: {img_size: logged run}."""
    tmp = tmp_path_factory.mktemp("parity")
    uri = f"sqlite:///{tmp / 'mlflow.db'}"
    runs = {}
    for img_size in (640, 320):
        result = pipeline.run(compose_config(coco128_overrides(uri, img_size)), output_dir=tmp / str(img_size))
        runs[img_size] = logged_run(uri, result.run_id)
    return runs


@pytest.mark.slow
@pytest.mark.shared("data/coco128", "weights/yolov5n.state_dict.pt")
def test_evaluating_yolov5n_at_640_logs_yolov5s_coco128_map(evaluated_checkpoint):
    run = evaluated_checkpoint[640]
    assert run["tags.status"] == "completed"
    assert run["tags.weights_transferred"].startswith("loaded 349/349 tensors from a yolov5 state_dict")
    assert run["metrics.val/map50_95"] == pytest.approx(0.367, abs=0.01)
    assert run["metrics.val/map50"] == pytest.approx(0.571, abs=0.01)
    assert run["metrics.train_seconds"] == 0.0  # epochs=0: evaluated, not trained


@pytest.mark.slow
@pytest.mark.shared("data/coco128", "weights/yolov5n.state_dict.pt")
def test_evaluating_yolov5n_at_320_runs_and_scores_lower_than_at_640(evaluated_checkpoint):
    at_320, at_640 = evaluated_checkpoint[320], evaluated_checkpoint[640]
    assert at_320["tags.status"] == "completed"
    assert 0.1 < at_320["metrics.val/map50_95"] < at_640["metrics.val/map50_95"]
    assert 0.1 < at_320["metrics.val/map50"] < at_640["metrics.val/map50"]
    assert at_320["metrics.gflops"] == pytest.approx(at_640["metrics.gflops"] / 4, rel=1e-3)


@pytest.mark.slow
@pytest.mark.shared("data/coco128", "weights/yolov5n.state_dict.pt")
def test_one_epoch_of_fine_tuning_at_320_keeps_map_above_0_2(tmp_path: Path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    cfg = compose_config(coco128_overrides(uri, 320, "train.epochs=1", "train.batch_size=16"))
    result = pipeline.run(cfg, output_dir=tmp_path / "out")
    run = logged_run(uri, result.run_id)
    assert run["tags.status"] == "completed"
    assert run["metrics.train_seconds"] > 0
    assert run["metrics.val/map50_95"] > 0.2


@pytest.mark.shared("data/coco128", "weights/yolov5n.state_dict.pt")
def test_weights_onto_a_ghost_backbone_transfer_neck_and_head_and_log_the_count(tmp_path: Path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    cfg = compose_config(coco128_overrides(uri, 64, "backbone=ghost"))
    result = pipeline.run(cfg, output_dir=tmp_path / "out")
    run = logged_run(uri, result.run_id)
    # The PAN neck and Detect (151 tensors), the stem and SPPF, and the C3Ghost blocks' 1×1
    # cv1/cv2/cv3 convs fit (same place, same shape); GhostConvs and GhostBottlenecks do not.
    assert run["tags.weights_transferred"] == "loaded 241/457 tensors from a yolov5 state_dict (349 tensors in the file)"
    assert run["tags.status"] == "completed"


@pytest.mark.shared("data/coco128", "weights/yolov5n.state_dict.pt")
def test_coco128_oddities_are_reported_by_name_and_backgrounds_are_evaluated(tmp_path: Path, caplog):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    with caplog.at_level(logging.WARNING):
        result = pipeline.run(compose_config(coco128_overrides(uri, 128)), output_dir=tmp_path / "out")
    run = logged_run(uri, result.run_id)

    logged = caplog.text
    for name in ORPHAN_LABELS:
        assert f"{name}: label file without an image" in logged
    assert json.loads(run["tags.data_issues"]) == {
        "train/orphan_label": 2, "train/missing_label_file": 2, "val/orphan_label": 2, "val/missing_label_file": 2,
    }
    # The label-less images are evaluated (128 images, not 126): their detections are false positives.
    store = Path(uri.removeprefix("sqlite:///")).parent / "mlartifacts" / EXPERIMENT / result.run_id / "artifacts"
    predictions = json.loads((store / "eval" / "predictions.json").read_text())
    scored_ids = {p["image_id"] for p in predictions}
    assert set(BACKGROUND_IDS) <= scored_ids
    assert len(scored_ids) == 128
