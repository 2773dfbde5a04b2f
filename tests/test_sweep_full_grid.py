"""Issue 3's acceptance: the whole 4 × 2 × 2 grid runs through one Hydra multirun with a
tiny training budget, every cell logged to MLflow with its params, GFLOPs and latency."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest


from conftest import REPO
from lightyolo.store.client import Store


@pytest.mark.slow
def test_all_sixteen_cells_train_evaluate_and_log(tmp_path: Path) -> None:
    store = tmp_path / "mlflow.db"
    proc = subprocess.run(
        [sys.executable, "-m", "lightyolo.sweep", "smoke", "train.epochs=1",
         "backbone=c3,ghost,shufflenetv2,mobilenetv3", "neck=pan,slim", "operator=conv,involution",
         f"mlflow.tracking_uri=sqlite:///{store}", f"hydra.sweep.dir={tmp_path / 'sweep'}",
         f"dataset.root={tmp_path / 'shapes'}"],
        cwd=REPO, capture_output=True, text=True, timeout=3600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    runs = Store(f"sqlite:///{store}").runs_frame("smoke")
    runs = runs[runs["tags.kind"].isna()]  # the cells, not the sweep's parent run
    assert len(runs) == 16 and (runs["tags.status"] == "completed").all()
    cells = set(zip(runs["tags.backbone"], runs["tags.neck"], runs["tags.operator"]))
    assert len(cells) == 16
    for metric in ("params", "gflops", "quick/latency_ms", "test/map50_95"):
        assert runs[f"metrics.{metric}"].notna().all(), metric
    assert (runs["metrics.gflops"] > 0).all() and (runs["metrics.quick/latency_ms"] > 0).all()
    assert "16/16 cells ok" in proc.stdout
