"""The report on a real sweep: a tiny smoke grid (2 necks × 2 seeds) run through Hydra's
multirun into a real MLflow store, then `python -m lightyolo.report` on it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from PIL import Image


from conftest import REPO
from lightyolo.store.client import Store

# report column → the logged metric it aggregates (store/schema.py; smoke cells have a test split)
METRICS = {"map50": "test/map50", "map50_95": "test/map50_95", "gflops": "gflops", "params_m": "params_m",
           "latency_ms": "quick/latency_ms"}


@pytest.fixture(scope="module")
def swept_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("report_sweep")
    store = root / "mlflow.db"
    proc = subprocess.run(
        [sys.executable, "-m", "lightyolo.sweep", "smoke", "backbone=c3", "neck=pan,slim", "seed=0,1",
         f"mlflow.tracking_uri=sqlite:///{store}", f"hydra.sweep.dir={root / 'sweep'}",
         f"dataset.root={root / 'shapes'}"],
        cwd=REPO, capture_output=True, text=True, timeout=900,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return store


def test_report_of_a_real_sweep_matches_the_mlflow_metrics(swept_store: Path, tmp_path: Path) -> None:
    uri = f"sqlite:///{swept_store}"
    proc = subprocess.run(
        [sys.executable, "-m", "lightyolo.report", "experiment=smoke", f"tracking_uri={uri}",
         f"out={tmp_path / 'reports'}"],
        cwd=tmp_path, capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    folder = tmp_path / "reports" / "smoke"
    variants = pd.read_csv(folder / "ablation.csv")
    assert sorted(variants["neck"]) == ["pan", "slim"]

    runs = Store(uri).runs_frame("smoke")
    cells = runs[(runs["tags.status"] == "completed") & runs["tags.kind"].isna()]  # not the sweep or report runs
    assert len(cells) == 4
    for neck, group in cells.groupby("tags.neck"):
        row = variants[variants["neck"] == neck].iloc[0]
        assert row["n_seeds"] == 2
        for metric, logged in METRICS.items():
            values = group[f"metrics.{logged}"]
            assert row[f"{metric}_mean"] == pytest.approx(values.mean(), rel=1e-9, abs=1e-12)
            assert row[f"{metric}_std"] == pytest.approx(values.std(ddof=1), rel=1e-6, abs=1e-12)
    baseline = variants[variants["neck"] == "pan"].iloc[0]
    slim = variants[variants["neck"] == "slim"].iloc[0]
    assert slim["delta_params_pct"] == pytest.approx(
        (slim["params_m_mean"] / baseline["params_m_mean"] - 1) * 100
    )

    markdown = (folder / "ablation.md").read_text()
    main_table = markdown.split("## Main table")[1].split("##")[0]
    rows = [line for line in main_table.splitlines() if line.startswith("| c3/")]
    assert [row.split("|")[1].strip() for row in rows] == ["c3/pan/conv", "c3/slim/conv"]
    assert "![map_vs_gflops]" in markdown
    plots = sorted(folder.glob("*.png"))
    assert len(plots) >= 2
    for plot in plots:
        with Image.open(plot) as image:
            assert image.size[0] > 100 and image.size[1] > 100
