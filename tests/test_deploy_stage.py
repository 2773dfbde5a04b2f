"""The bench stage and `python -m lightyolo.deploy` on a small real experiment: a toy runtime
registered by a package outside the repository (its own dist-info with an entry point in the
`lightyolo.runtimes` group) is timed beside the built-ins; pairs a runtime cannot take are
named, logged "unsupported" cells; mAP through each runtime is logged with how it was made."""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import pandas as pd
import pytest

from lightyolo import pipeline
from lightyolo.bench.experiment import BenchSettings, bench_runs
from lightyolo.deploy.__main__ import main as deploy_main
from lightyolo.deploy.registry import runtime_names
from lightyolo.report.cli import ReportOptions, write_report
from lightyolo.store.client import Store
from lightyolo.store.queries import CompletedRun, completed_runs

from conftest import compose_config, tiny_overrides
from toy_runtime import TOY, write_toy_package

EXPERIMENT = "deploytest"


CELLS = (["backbone=c3"],)


@pytest.fixture(scope="module")
def experiment(tmp_path_factory) -> str:
    """A completed tiny cell (c3/pan/conv, 1 epoch on the synthetic shapes) in a SQLite store."""
    tmp = tmp_path_factory.mktemp("deploy")
    for extra in CELLS:
        cfg = compose_config(tiny_overrides(tmp) + [f"experiment={EXPERIMENT}", *extra])
        assert pipeline.run(cfg, output_dir=tmp / extra[0]).status == "completed"
    return cfg.mlflow.tracking_uri


@pytest.fixture(scope="module")
def benched(experiment: str, tmp_path_factory):
    """The bench stage over the cell(s): torch, onnxruntime, openvino, ncnn and the toy
    runtime (installed for this fixture only) at fp32 and int8; (results, log lines)."""
    site = tmp_path_factory.mktemp("site-packages")
    write_toy_package(site)
    logged: list[str] = []
    with pytest.MonkeyPatch.context() as patch:
        patch.syspath_prepend(str(site))
        assert TOY in runtime_names()
        settings = BenchSettings(runtimes=("torch", "onnxruntime", "openvino", "ncnn", TOY), precisions=("fp32", "int8"),
                                 rounds=4, warmup=0, iters=1, clock="cpu", calibration_images=4)
        results = bench_runs(experiment, EXPERIMENT, settings, log=logged.append)
    return results, logged


@pytest.fixture(scope="module")
def deployed(experiment: str) -> str:
    """`python -m lightyolo.deploy` on the c3 cell through torch, ONNX Runtime and OpenVINO at
    fp32 and int8; its printed table."""
    c3 = next(r for r in completed_runs(Store(experiment), EXPERIMENT) if r.run_name == "c3-pan-conv-s0")
    capture = io.StringIO()
    with contextlib.redirect_stdout(capture):
        assert deploy_main([f"experiment={EXPERIMENT}", f"tracking_uri={experiment}", f"run_ids={c3.run_id}",
                            "runtimes=[torch,onnxruntime,openvino]", "precisions=[fp32,int8]",
                            "calibration_images=4"]) == 0
    return capture.getvalue()


def c3_run(uri: str) -> CompletedRun:
    return next(r for r in completed_runs(Store(uri), EXPERIMENT) if r.run_name == "c3-pan-conv-s0")




def test_a_runtime_from_an_outside_package_is_timed_beside_the_built_ins(experiment: str, benched) -> None:
    results, logged = benched
    methods = {r.method for r in results}
    assert methods == {f"{key}_cpu_t1_b1_64_cputime" for key in
                       ("torch", "onnxruntime", "openvino", "ncnn", TOY, "onnxruntime_int8", "openvino_int8")}
    assert all(r.summary.median_ms > 0 for r in results) and len(results) == len(CELLS) * 7
    run = c3_run(experiment)
    toy = json.loads(run.tags[f"bench/{TOY}_cpu_t1_b1_64_cputime"])
    assert (toy["runtime"], toy["runtime_version"], toy["graph_optimization"]) == (TOY, "0.1", "disabled")
    assert run.metrics[f"bench/{TOY}_cpu_t1_b1_64_cputime/median_ms"] > 0
    # INT8 figures carry their calibration set: training images of the cell's own dataset.
    int8 = json.loads(run.tags["bench/openvino_int8_cpu_t1_b1_64_cputime"])
    assert int8["calibration"]["split"] == "train" and int8["calibration"]["images_used"] == 4
    assert int8["precision"] == "int8" and "nncf" in int8["quantization"]
    # Pairs a runtime cannot take are named cells with their reason, not a crash.
    for key, reason in (("torch_int8", "torch does not run int8"), ("ncnn_int8", "ncnn does not run int8"),
                        (f"{TOY}_int8", f"{TOY} does not run int8")):
        tag = json.loads(run.tags[f"bench/{key}_cpu_t1_b1_64_cputime"])
        assert tag["status"] == "unsupported" and reason in tag["reason"]
        assert f"bench/{key}_cpu_t1_b1_64_cputime/median_ms" not in run.metrics
        assert any(key in line and "unsupported" in line for line in logged)


def test_deploy_logs_map_through_each_runtime_with_how_it_was_measured(experiment: str, deployed: str) -> None:
    run = c3_run(experiment)
    reference = run.metrics["deploy/torch_fp32/map50_95"]
    for key in ("onnxruntime_fp32", "openvino_fp32"):
        assert run.metrics[f"deploy/{key}/map50_95"] == pytest.approx(reference, abs=0.002)
        assert 0 <= run.metrics[f"deploy/{key}/map50"] <= 1
    for key in ("onnxruntime_int8", "openvino_int8"):
        how = json.loads(run.tags[f"deploy/{key}"])
        assert how["status"] == "measured" and how["split"] == "test" and how["images"] == 8
        assert how["calibration"]["split"] == "train" and how["calibration"]["also_in_test"] == 0
        assert 0 <= run.metrics[f"deploy/{key}/map50_95"] <= 1
    assert json.loads(run.tags["deploy/torch_int8"])["status"] == "unsupported"
    table = deployed
    assert "| c3-pan-conv-s0 | torch_int8 | unsupported |" in table
    assert f"| c3-pan-conv-s0 | openvino_int8 | {run.metrics['deploy/openvino_int8/map50_95']:.4f} |" in table


def test_the_report_gains_a_deployment_section_and_its_csvs(experiment: str, benched, deployed, tmp_path: Path) -> None:
    files = write_report(ReportOptions(experiment=EXPERIMENT, tracking_uri=experiment, out=str(tmp_path)))
    text = files.markdown.read_text()
    section = text.split("## Deployment: runtimes and precisions")[1].split("\n## ")[0]
    rows = pd.read_csv(files.directory / "deployment.csv")
    assert set(zip(rows["runtime"], rows["precision"])) >= {
        ("torch", "fp32"), ("onnxruntime", "int8"), ("openvino", "int8"), ("ncnn", "fp32"), (TOY, "fp32")}
    assert len(rows) == len(CELLS) * 10  # per cell 7 measured + 3 unsupported
    unsupported = rows[rows["unsupported"].notna() & (rows["unsupported"] != "")]
    assert set(zip(unsupported["runtime"], unsupported["precision"])) == {("torch", "int8"), ("ncnn", "int8"), (TOY, "int8")}
    assert "| c3/pan/conv | ncnn | int8 | unsupported: ncnn does not run int8 here" in section
    ort_int8 = rows[(rows["variant"] == "c3/pan/conv") & (rows["runtime"] == "onnxruntime") & (rows["precision"] == "int8")].iloc[0]
    assert ort_int8["latency_ms_ci_low"] <= ort_int8["latency_ms"] <= ort_int8["latency_ms_ci_high"]
    assert ort_int8["speedup_vs_own_fp32_low"] <= ort_int8["speedup_vs_own_fp32"] <= ort_int8["speedup_vs_own_fp32_high"]
    assert ort_int8["map_drop"] == pytest.approx(ort_int8["map50_95_deployed"] - rows[
        (rows["variant"] == "c3/pan/conv") & (rows["runtime"] == "torch") & (rows["precision"] == "fp32")
    ].iloc[0]["map50_95_deployed"])
    assert "INT8 in openvino: c3/pan/conv survives best" in section
    # The main table keeps torch and ONNX Runtime at fp32 only.
    main = text.split("## Main table")[1].split("\n## ")[0]
    assert "speed-up onnxruntime [95 % CI]" in main and "openvino" not in main and "int8" not in main
    assert files.directory / "deployment.csv" in files.all()


def test_deploy_refuses_an_unknown_runtime_in_one_line(experiment: str, capsys) -> None:
    assert deploy_main([f"experiment={EXPERIMENT}", f"tracking_uri={experiment}", "runtimes=tflite"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "unknown runtime 'tflite'" in err[0]
