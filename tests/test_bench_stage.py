"""The bench stage on a small real experiment: two tiny cells trained with pipeline.run,
measured interleaved in torch and ONNX Runtime, figures and method tags on each run."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from lightyolo import pipeline
from lightyolo.bench.__main__ import main
from lightyolo.bench.experiment import BenchError, BenchSettings, bench_runs
from lightyolo.bench.stage import interleaved_timings, round_ratio, summarise
from lightyolo.store.schema import ONNX_ARTIFACT
from lightyolo.store.client import Store
from lightyolo.store.queries import completed_runs
from lightyolo.store.runs import RunTracker

from conftest import REPO, compose_config, tiny_overrides

EXPERIMENT = "benchtest"
SETTINGS = BenchSettings(rounds=3, warmup=1, iters=2, clock="wall")
METHODS = ("torch_cpu_t1_b1_64", "onnxruntime_cpu_t1_b1_64")
FIGURES = ("median_ms", "p90_ms", "ci_low_ms", "ci_high_ms")


@pytest.fixture(scope="module")
def experiment(tmp_path_factory) -> str:
    """Two completed tiny cells (c3/pan/conv and ghost/slim/conv) in one SQLite store."""
    tmp = tmp_path_factory.mktemp("bench")
    for extra in (["backbone=c3"], ["backbone=ghost", "neck=slim"]):
        cfg = compose_config(tiny_overrides(tmp) + [f"experiment={EXPERIMENT}", *extra])
        assert pipeline.run(cfg, output_dir=tmp / extra[0]).status == "completed"
    return cfg.mlflow.tracking_uri


def bench_metrics(uri: str) -> dict[str, dict[str, float]]:
    return {r.run_name: r.metrics for r in completed_runs(Store(uri), EXPERIMENT)}


def test_bench_writes_each_methods_figures_and_tag_on_every_run(experiment: str) -> None:
    results = bench_runs(experiment, EXPERIMENT, SETTINGS, log=lambda _: None)
    assert len(results) == 4
    runs = completed_runs(Store(experiment), EXPERIMENT)
    assert {r.run_name for r in runs} == {"c3-pan-conv-s0", "ghost-slim-conv-s0"}
    for run in runs:
        for method in METHODS:
            figures = {k: run.metrics[f"bench/{method}/{k}"] for k in FIGURES}
            assert 0 < figures["ci_low_ms"] <= figures["median_ms"] <= figures["ci_high_ms"]
            assert figures["median_ms"] <= figures["p90_ms"]
            tag = json.loads(run.tags[f"bench/{method}"])
            assert tag["runtime"] == method.split("_cpu")[0]
            assert (tag["device"], tag["threads"], tag["batch"], tag["img"]) == ("cpu", 1, 1, 64)
            assert (tag["rounds"], tag["iters"], tag["cells_interleaved"]) == (3, 2, 2)
            assert tag["device_name"] and tag["torch_version"] and tag["onnxruntime_version"]
            assert tag["memory_format"] == "contiguous NCHW"
            assert Store(experiment).has_artifact(run.run_id, f"bench/{method}.json")
        assert Store(experiment).has_artifact(run.run_id, ONNX_ARTIFACT)


def test_running_again_replaces_the_same_methods_figures(experiment: str) -> None:
    bench_runs(experiment, EXPERIMENT, SETTINGS, log=lambda _: None)
    run = completed_runs(Store(experiment), EXPERIMENT)[0]
    key = f"bench/{METHODS[0]}/median_ms"
    again = bench_runs(
        experiment, EXPERIMENT, BenchSettings(runtimes=("torch",), rounds=2, warmup=0, iters=1, clock="wall"),
        run_ids=(run.run_id,), log=lambda _: None,
    )
    assert [r.run_id for r in again] == [run.run_id]
    history = Store(experiment).metric_history(run.run_id, key)
    latest = {r.run_id: r for r in completed_runs(Store(experiment), EXPERIMENT)}[run.run_id]
    assert len(history) >= 2  # the earlier figures stay in the history ...
    assert latest.metrics[key] == again[0].summary.median_ms  # ... the run's figure is the new one
    assert json.loads(latest.tags[f"bench/{METHODS[0]}"])["rounds"] == 2


def test_an_experiment_without_completed_runs_fails_with_one_line(experiment: str, capsys) -> None:
    Store(experiment).ensure_experiment("empty")
    assert main(["experiment=empty", f"tracking_uri={experiment}"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "'empty'" in err[0] and "no completed runs" in err[0]


def test_a_run_without_weights_fails_with_one_line_naming_it(tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    run = RunTracker.start(Store(uri), "noweights", run_name="c3-pan-conv-s0", tags={}, params={})
    config = tmp_path / "config.yaml"
    config.write_text("train: {img_size: 64}\n")
    run.log_artifact(config)
    run.finish("completed")
    proc = subprocess.run(
        [sys.executable, "-m", "lightyolo.bench", "experiment=noweights", f"tracking_uri={uri}"],
        cwd=REPO, capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in proc.stderr
    assert run.run_id in lines[0] and "weights/best.pt" in lines[0]


def test_interleaving_visits_every_subject_every_round_in_a_shuffled_order() -> None:
    visits: list[str] = []
    passes = {name: (lambda name=name: visits.append(name)) for name in "abcd"}
    times = interleaved_timings(passes, rounds=6, warmup=0, iters=1, seed=1)
    rounds = [visits[i : i + 4] for i in range(0, 24, 4)]
    assert all(sorted(r) == list("abcd") for r in rounds)
    assert len({tuple(r) for r in rounds}) > 1
    assert all(t.shape == (6, 1) for t in times.values())


def test_summary_and_ratio_statistics() -> None:
    rng = np.random.default_rng(0)
    times = 10 + rng.random((20, 5))
    summary = summarise(times)
    assert summary.median_ms == pytest.approx(np.median(np.median(times, axis=1)))
    assert summary.ci_low_ms <= summary.median_ms <= summary.ci_high_ms
    assert summary.p90_ms == pytest.approx(np.percentile(times, 90))
    assert round_ratio(times, times).median == 1.0
    assert not round_ratio(times * 2, times).contains(1.0)


def test_bad_settings_fail_as_bench_errors(experiment: str) -> None:
    with pytest.raises(BenchError, match="unknown runtime 'tensorrt'"):
        bench_runs(experiment, EXPERIMENT, BenchSettings(runtimes=("tensorrt",)), log=lambda _: None)
    with pytest.raises(BenchError, match="torch_fp16 runs on device=cuda only"):
        bench_runs(experiment, EXPERIMENT, BenchSettings(runtimes=("torch_fp16",)), log=lambda _: None)
    with pytest.raises(BenchError, match="clock=cpu needs device=cpu and threads=1"):
        bench_runs(experiment, EXPERIMENT, BenchSettings(threads=2, clock="cpu"), log=lambda _: None)


def test_cpu_clock_times_the_work_and_names_its_methods_apart(experiment: str) -> None:
    busy = {"spin": lambda: sum(range(20000)), "sleep": lambda: __import__("time").sleep(0.01)}
    times = interleaved_timings(busy, rounds=2, warmup=0, iters=3, clock="cpu")
    assert times["spin"].min() > 0
    assert times["sleep"].max() < 5  # sleeping costs (almost) no CPU time, unlike 10 ms of wall clock
    # The default clock at one CPU thread is CPU time.
    results = bench_runs(experiment, EXPERIMENT, BenchSettings(runtimes=("torch",), rounds=2, warmup=0,
                         iters=1), log=lambda _: None)
    assert {r.method for r in results} == {"torch_cpu_t1_b1_64_cputime"}
    run = completed_runs(Store(experiment), EXPERIMENT)[0]
    assert json.loads(run.tags["bench/torch_cpu_t1_b1_64_cputime"])["clock"].startswith("process CPU time")
