"""The bench stage and `python -m lightyolo.deploy` on a small real experiment: a toy runtime
registered by a package outside the repository (its own dist-info with an entry point in the
`lightyolo.runtimes` group) is timed beside the built-ins; pairs a runtime cannot take are
named, logged "unsupported" cells; mAP through each runtime is logged with how it was made."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest

from lightyolo import pipeline, tracking
from lightyolo.bench.experiment import BenchSettings, bench_runs
from lightyolo.deploy.__main__ import main as deploy_main
from lightyolo.deploy.registry import ENTRY_POINT_GROUP, runtime_names

from conftest import compose_config, tiny_overrides

EXPERIMENT = "deploytest"
TOY = "toyruntime"


@pytest.fixture(scope="module")
def experiment(tmp_path_factory) -> str:
    """One completed tiny cell (c3/pan/conv, 1 epoch on the synthetic shapes) in a SQLite store."""
    tmp = tmp_path_factory.mktemp("deploy")
    cfg = compose_config(tiny_overrides(tmp) + [f"experiment={EXPERIMENT}"])
    assert pipeline.run(cfg, output_dir=tmp / "run").status == "completed"
    return cfg.mlflow.tracking_uri


@pytest.fixture
def toy_package(tmp_path: Path, monkeypatch) -> Path:
    """A package the repository does not contain, installed the way pip leaves one: a module
    and a dist-info whose entry_points.txt declares the runtime. It runs the export in ONNX
    Runtime with every graph optimisation off (a runtime lightyolo does not ship)."""
    site = tmp_path / "site-packages"
    (site / "toy_runtime_pkg").mkdir(parents=True)
    (site / "toy_runtime_pkg" / "__init__.py").write_text(textwrap.dedent('''
        import onnxruntime as ort

        from lightyolo.deploy.runtime import Session, check_precision


        class ToySession(Session):
            def __init__(self, session):
                self.session = session
                self.description = {"graph_optimization": "disabled"}

            def run(self, images):
                return self.session.run(None, {"images": images})[0]


        class ToyRuntime:
            name = "toyruntime"

            def __init__(self, device="cpu", threads=1):
                self.device, self.threads = device, threads

            version = "0.1"

            def load(self, exported, precision):
                check_precision(self.name, precision, ("fp32",))
                options = ort.SessionOptions()
                options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
                options.intra_op_num_threads = self.threads
                return ToySession(ort.InferenceSession(str(exported.onnx), options, providers=["CPUExecutionProvider"]))
    '''))
    info = site / "toy_runtime_pkg-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: toy-runtime-pkg\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(f"[{ENTRY_POINT_GROUP}]\n{TOY} = toy_runtime_pkg:ToyRuntime\n")
    monkeypatch.syspath_prepend(str(site))
    return site


def test_a_runtime_from_an_outside_package_is_timed_beside_the_built_ins(experiment: str, toy_package: Path) -> None:
    assert TOY in runtime_names()
    settings = BenchSettings(runtimes=("torch", "onnxruntime", "openvino", "ncnn", TOY), precisions=("fp32", "int8"),
                             rounds=2, warmup=0, iters=1, clock="cpu", calibration_images=4)
    logged: list[str] = []
    results = bench_runs(experiment, EXPERIMENT, settings, log=logged.append)
    methods = {r.method for r in results}
    assert methods == {f"{key}_cpu_t1_b1_64_cputime" for key in
                       ("torch", "onnxruntime", "openvino", "ncnn", TOY, "onnxruntime_int8", "openvino_int8")}
    assert all(r.summary.median_ms > 0 for r in results)
    run = tracking.completed_runs(experiment, EXPERIMENT)[0]
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


def test_deploy_logs_map_through_each_runtime_with_how_it_was_measured(experiment: str, capsys) -> None:
    assert deploy_main([f"experiment={EXPERIMENT}", f"tracking_uri={experiment}", "runtimes=[torch,onnxruntime,openvino]",
                        "precisions=[fp32,int8]", "calibration_images=4"]) == 0
    run = tracking.completed_runs(experiment, EXPERIMENT)[0]
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
    table = capsys.readouterr().out
    assert "| c3-pan-conv-s0 | torch_int8 | unsupported |" in table
    assert f"| c3-pan-conv-s0 | openvino_int8 | {run.metrics['deploy/openvino_int8/map50_95']:.4f} |" in table


def test_deploy_refuses_an_unknown_runtime_in_one_line(experiment: str, capsys) -> None:
    assert deploy_main([f"experiment={EXPERIMENT}", f"tracking_uri={experiment}", "runtimes=tflite"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "unknown runtime 'tflite'" in err[0]
