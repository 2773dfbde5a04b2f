"""Selection kept apart from reporting (issue 11, part 3) and YOLOv5's recipe (part 7)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hydra.utils import instantiate

from lightyolo import pipeline
from lightyolo.data.dataset import DetectionDataset
from lightyolo.data.loader import build_dataloader
from lightyolo.eval.evaluate import evaluate, ground_truth_for
from lightyolo.models.detector import build_detector
from lightyolo.settings import resolve
from lightyolo.train.checkpoint import load_checkpoint
from lightyolo.train.loop import accumulate_at
from lightyolo.store.client import Store

from conftest import compose_config

TWO_EPOCHS = ("train.epochs=2", "train.eval_interval=1")


def logged_run(cfg) -> dict:
    (run,) = Store(cfg.mlflow.tracking_uri).runs_frame("lightyolo").to_dict("records")
    return run


def test_with_a_test_split_the_best_val_epoch_is_reported_on_test(tiny_config) -> None:
    cfg = tiny_config(*TWO_EPOCHS)
    result = pipeline.run(cfg)
    run = logged_run(cfg)
    assert run["tags.eval_split"] == "test"
    best = load_checkpoint(Path(run["tags.output_dir"]) / "weights" / "best.pt")
    assert run["metrics.val_best/epoch"] == best["epoch"] + 1
    val = dict(Store(cfg.mlflow.tracking_uri).metric_history(result.run_id, "val/map50_95"))
    assert run["metrics.val_best/map50_95"] == pytest.approx(val[best["epoch"] + 1])

    # An independent evaluation of best.pt on the test split gives the reported figures.
    settings = resolve(cfg)
    spec = instantiate(settings.config["dataset"])
    model = build_detector(cfg.backbone, cfg.neck, cfg.operator, scale="n", nc=spec.nc)
    model.load_state_dict(best["model"])
    data = DetectionDataset(spec.test, 64, augment=False, rect=True, batch_size=8, stride=32)
    loader = build_dataloader(data, batch_size=8, workers=0, shuffle=False, seed=0)
    coco = evaluate(
        model, loader, coco_gt=ground_truth_for(spec, "test"), category_ids=spec.category_ids,
        conf_thres=cfg.eval.conf_thres, iou_thres=cfg.eval.iou_thres, max_det=cfg.eval.max_det,
        device="cpu",
    )
    assert result.metrics["map50_95"] == pytest.approx(coco.metrics["map50_95"])
    assert result.metrics["map50"] == pytest.approx(coco.metrics["map50"])
    store = Path(cfg.mlflow.tracking_uri.removeprefix("sqlite:///")).parent / "mlartifacts" / "lightyolo"
    logged = json.loads((store / result.run_id / "artifacts" / "eval" / "predictions.json").read_text())
    # Detections of the same test images (boxes agree to float noise only: the run's model
    # is channels_last, this one is not).
    images = {p["image_id"] for p in logged}
    assert images and images == {p["image_id"] for p in coco.predictions}
    assert images <= {r.image_id for r in spec.test}


def test_without_a_test_split_the_final_epoch_is_reported_on_val(tiny_config) -> None:
    cfg = tiny_config(*TWO_EPOCHS, "dataset.num_test=0")
    result = pipeline.run(cfg)
    run = logged_run(cfg)
    assert run["tags.eval_split"] == "val"
    val = dict(Store(cfg.mlflow.tracking_uri).metric_history(result.run_id, "val/map50_95"))
    assert result.metrics["map50_95"] == pytest.approx(val[2])  # the last epoch, not the best
    assert run["metrics.val_best/map50_95"] == pytest.approx(max(val.values()))
    assert run["metrics.val_best/epoch"] in (1.0, 2.0)


def test_ground_truth_for_a_split_the_dataset_lacks_names_it(tiny_config) -> None:
    spec = instantiate(resolve(tiny_config("dataset.num_test=0")).config["dataset"])
    with pytest.raises(ValueError, match="no test split"):
        ground_truth_for(spec, "test")


@pytest.mark.parametrize(("step", "expected"), [
    (0, 1), (17, 2), (50, 2), (84, 4), (100, 4), (5000, 4),
])
def test_accumulation_ramps_up_during_warmup_like_yolov5(step: int, expected: int) -> None:
    # nominal 64, batch 16, 100 warmup iterations: 1 + 3 · step / 100 batches, rounded half to even
    assert accumulate_at(step, 100, 64, 16) == expected


def test_no_accumulation_when_the_batch_is_the_nominal_batch() -> None:
    assert {accumulate_at(step, 20, 8, 8) for step in range(40)} == {1}


def test_the_default_schedule_is_yolov5s_linear_and_shapes_keeps_its_cosine() -> None:
    assert compose_config(["dataset=coco128"]).train.schedule == "linear"
    assert compose_config([]).train.schedule == "cosine"
