"""The vertical slice end to end: one real run through Hydra's config, MLflow and pycocotools."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from hydra.utils import instantiate

from lightyolo import pipeline
from lightyolo.eval.evaluate import STAGES
from lightyolo.store.client import Store

from conftest import REPO

SCHEMA_METRICS = {
    "test/map50", "test/map50_95", "test/map_small", "test/map_medium", "test/map_large", "params_m", "gflops",
    "quick/latency_ms", "quick/latency_p90_ms", "quick/fps", "train_seconds", "train_images_per_s",
}
SCHEMA_TAGS = {
    "backbone", "neck", "operator", "dataset", "seed", "config_hash", "sweep_id", "status",
    "git_sha", "eval_split", "variant_hash", "recipe_hash", "code_identity", "dataset_fingerprint",
}


def test_tiny_run_logs_every_schema_metric_tag_and_artifact(tiny_config, tmp_path: Path) -> None:
    cfg = tiny_config()
    result = pipeline.run(cfg, output_dir=tmp_path / "out")

    uri = cfg.mlflow.tracking_uri
    runs = Store(uri).runs_frame("lightyolo")
    assert len(runs) == 1
    run = runs.iloc[0]
    assert run["run_name"] == "c3-pan-conv-s0"
    assert run["mlflow_status"] == "FINISHED"
    assert SCHEMA_TAGS <= {c.removeprefix("tags.") for c in runs.columns if c.startswith("tags.")}
    assert run["tags.status"] == "completed"
    assert (run["tags.backbone"], run["tags.neck"], run["tags.operator"]) == ("c3", "pan", "conv")
    assert run["tags.dataset"] == "shapes"
    for key in SCHEMA_METRICS:
        assert run[f"metrics.{key}"] == pytest.approx(result.metrics[key])
    assert 0.0 <= run["metrics.test/map50_95"] <= run["metrics.test/map50"] <= 1.0
    nc = instantiate(cfg.dataset).nc
    # yolov5n without its 80-class Detect convs (1,757,152), plus 3·(5+nc) outputs per level from 64/128/256 channels.
    detect = 3 * (5 + nc) * (64 + 128 + 256) + 3 * 3 * (5 + nc)  # weights + biases
    assert run["metrics.params"] == 1_757_152 + detect
    assert run["metrics.gflops"] > 0 and run["metrics.quick/latency_ms"] > 0
    stages = [run[f"metrics.eval_seconds/{stage}"] for stage in STAGES]
    assert min(stages) >= 0 and sum(stages) <= run["metrics.eval_seconds"]
    assert run["params.train.img_size"] == "64" and run["params.model.scale"] == "n"
    # Per-epoch metrics, step = epoch.
    for key in ("train/box_loss", "train/obj_loss", "train/cls_loss", "lr", "val/map50", "val/map50_95"):
        assert [step for step, _ in Store(uri).metric_history(result.run_id, key)] == [1], key

    artifacts = Path(run["tags.output_dir"])
    assert (artifacts / "weights" / "last.pt").exists() and (artifacts / "weights" / "best.pt").exists()
    store = Path(uri.removeprefix("sqlite:///")).parent / "mlartifacts" / "lightyolo" / result.run_id / "artifacts"
    logged = {p.relative_to(store).as_posix() for p in store.rglob("*") if p.is_file()}
    assert {"config.yaml", "weights/last.pt", "weights/best.pt", "eval/predictions.json",
            "eval/coco_stats.json"} <= logged
    stats = json.loads((store / "eval" / "coco_stats.json").read_text())
    assert stats["map50_95"] == pytest.approx(result.metrics["map50_95"])
    best = torch.load(store / "weights" / "best.pt", weights_only=True)
    assert "model" in best


def test_a_failing_run_is_ended_failed_with_its_error(tiny_config) -> None:
    cfg = tiny_config("train.device=cuda:7" if not torch.cuda.is_available() else "model.scale=xl")
    with pytest.raises(ValueError):
        pipeline.run(cfg)
    run = Store(cfg.mlflow.tracking_uri).runs_frame("lightyolo").iloc[0]
    assert run["mlflow_status"] == "FAILED"
    assert run["tags.status"] == "failed"
    assert "ValueError" in run["tags.error"]


def test_unknown_backbone_fails_at_once_with_one_line_listing_the_valid_ones() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "lightyolo.run", "backbone=nope"],
        cwd=REPO, capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode != 0
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1
    assert "nope" in lines[0] and "c3" in lines[0] and "ghost" in lines[0]
