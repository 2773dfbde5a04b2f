"""The report's rank agreement between runtimes: three tiny cells benched in torch, ONNX
Runtime, OpenVINO (fp32 and int8) and ncnn, Kendall's τ of every two methods with its interval
from resampling rounds. Slow (about a minute and a half on the shared 2-core machine: three
trainings and seven deployments of each cell); the fast path of the same section is in
test_deploy_stage.py."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from lightyolo import pipeline
from lightyolo.bench.experiment import BenchSettings, bench_runs
from lightyolo.report.cli import ReportOptions, write_report
from lightyolo.report.deployment import kendall_tau_b

from conftest import compose_config, tiny_overrides

pytestmark = pytest.mark.slow
EXPERIMENT = "deployranks"
CELLS = (["backbone=c3"], ["backbone=ghost", "neck=slim"], ["backbone=shufflenetv2"])


def test_kendall_tau_b_is_scipys_statistic_per_row() -> None:
    rng = np.random.default_rng(1)
    a = rng.random((40, 5))
    b = a + rng.random((40, 5))
    b[0] = b[0].round()  # ties
    expected = [stats.kendalltau(x, y).statistic for x, y in zip(a, b)]
    assert kendall_tau_b(a, b) == pytest.approx(expected)


def test_the_report_gives_tau_between_every_two_runtimes_with_an_interval(tmp_path: Path) -> None:
    for extra in CELLS:
        cfg = compose_config(tiny_overrides(tmp_path) + [f"experiment={EXPERIMENT}", *extra])
        assert pipeline.run(cfg, output_dir=tmp_path / extra[0]).status == "completed"
    uri = cfg.mlflow.tracking_uri
    settings = BenchSettings(runtimes=("torch", "onnxruntime", "openvino", "ncnn"), precisions=("fp32", "int8"),
                             rounds=6, warmup=1, iters=1, clock="cpu", calibration_images=4)
    bench_runs(uri, EXPERIMENT, settings, log=lambda _: None)
    files = write_report(ReportOptions(experiment=EXPERIMENT, tracking_uri=uri, out=str(tmp_path / "reports")))
    ranks = pd.read_csv(files.directory / "deployment_rank_agreement.csv")
    assert len(ranks) == 15 and (ranks["variants"] == 3).all()  # 6 measured methods, every pair
    # τ over 3 cells takes the values ±1/3, ±1; a percentile interval of it need not hold the
    # point estimate, but lies within [-1, 1] in order.
    assert ranks["tau"].abs().round(6).isin([round(1 / 3, 6), 1.0]).all()
    assert ((-1 <= ranks["tau_low"]) & (ranks["tau_low"] <= ranks["tau_high"]) & (ranks["tau_high"] <= 1)).all()
    text = files.markdown.read_text()
    assert "### Do runtimes agree on which cell is fastest?" in text and "The ranking changes most between" in text
