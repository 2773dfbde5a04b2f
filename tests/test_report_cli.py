"""The report end to end on a real SQLite MLflow store written with RunTracker per the schema.

The grid: backbones {c3, ghost, shufflenetv2} × necks {pan, slim} × operator conv; four
variants complete with seeds 0 and 1, ghost/slim/conv fails, shufflenetv2/slim/conv has no
run (missing). Expected means and stds are recomputed here from the logged values
(std: sample, ddof=1, as the report documents).
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from PIL import Image

from scipy import stats

from lightyolo.report.cli import ReportOptions, main, parse_options, write_report
from lightyolo.report.collect import UsageError
from lightyolo.store.client import Store
from lightyolo.store.locks import default_tracking_uri
from lightyolo.store.runs import RunTracker, flatten

REPO = Path(__file__).resolve().parents[1]
EXPERIMENT = "tiny-ablation"

# variant → per-seed (map50_95, gflops, latency_ms, params)
COMPLETED: dict[str, list[tuple[float, float, float, int]]] = {
    "c3/pan/conv": [(0.300, 4.5, 20.0, 1_872_157), (0.310, 4.5, 22.0, 1_872_157)],
    "ghost/pan/conv": [(0.280, 2.5, 12.0, 1_100_000), (0.284, 2.5, 13.0, 1_100_000)],
    "c3/slim/conv": [(0.320, 4.1, 21.0, 1_670_000), (0.322, 4.1, 21.5, 1_670_000)],
    "shufflenetv2/pan/conv": [(0.250, 1.2, 25.0, 900_000), (0.262, 1.2, 26.0, 900_000)],
}
FAILED = "ghost/slim/conv"
ERROR = "RuntimeError: CUDA out of memory (simulated)"


def final_metrics(map50_95: float, gflops: float, latency: float, params: int) -> dict[str, float]:
    return {
        "map50": map50_95 + 0.18,
        "map50_95": map50_95,
        "map_small": map50_95 / 3,
        "map_medium": map50_95,
        "map_large": map50_95 * 1.2,
        "params_m": params / 1e6,
        "params": params,
        "gflops": gflops,
        "latency_ms": latency,
        "latency_p90_ms": latency * 1.1,
        "fps": 1000.0 / latency,
        "train_seconds": 3.0,
        "train_images_per_s": 40.0,
    }


def start_run(uri: str, variant: str, seed: int, *, experiment: str = EXPERIMENT,
              epochs: int = 2, extra_tags: dict | None = None) -> RunTracker:
    backbone, neck, operator = variant.split("/")
    config = {
        "model": {"scale": "n"},
        "train": {"img_size": 64, "epochs": epochs, "threads": seed + 1},
        "dataset": {"name": "shapes"},
        "bench": {"warmup": 2, "iters": 5},
        "seed": seed,
    }
    tags = {
        "backbone": backbone, "neck": neck, "operator": operator, "dataset": "shapes",
        "seed": seed, "config_hash": f"{variant}-{seed}", "sweep_id": "sweep-1",
        "git_sha": "abc1234", "lightyolo_version": "0.1.0", **(extra_tags or {}),
    }
    return RunTracker.start(
        Store(uri), experiment, run_name=f"{backbone}-{neck}-{operator}-s{seed}", tags=tags,
        params=flatten(config),
    )


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """(directory holding mlflow.db, its URI), the sweep above logged into it."""
    root = tmp_path_factory.mktemp("store")
    uri = default_tracking_uri(root)
    for variant, seeds in COMPLETED.items():
        for seed, values in enumerate(seeds):
            run = start_run(uri, variant, seed)
            for epoch in range(2):
                run.log_metrics({"train/box_loss": 0.1 - epoch / 100, "val/map50_95": 0.1}, epoch)
            run.log_metrics(final_metrics(*values))
            run.set_tags({"latency_device": "cpu", "latency_threads": "2", "latency_batch": "1"})
            run.finish("completed")
    start_run(uri, FAILED, 0).finish("failed", error=f"Traceback ...\n{ERROR}")
    Store(uri).ensure_experiment("empty")
    return root, uri


@pytest.fixture(scope="module")
def report(store: tuple[Path, str], tmp_path_factory: pytest.TempPathFactory):
    root, uri = store
    out = tmp_path_factory.mktemp("reports")
    options = ReportOptions(experiment=EXPERIMENT, tracking_uri=uri, out=str(out))
    return write_report(options)


def variant_row(table: pd.DataFrame, variant: str) -> pd.Series:
    backbone, neck, operator = variant.split("/")
    rows = table[(table["backbone"] == backbone) & (table["neck"] == neck)
                 & (table["operator"] == operator)]
    assert len(rows) == 1, variant
    return rows.iloc[0]


def test_csv_means_and_stds_equal_the_logged_metrics(report) -> None:
    table = pd.read_csv(report.variants_csv)
    assert len(table) == 6
    for variant, seeds in COMPLETED.items():
        row = variant_row(table, variant)
        assert row["status"] == "completed" and row["n_seeds"] == 2
        logged = [final_metrics(*values) for values in seeds]
        for metric in ("map50", "map50_95", "map_small", "gflops", "latency_ms", "fps", "params"):
            values = [m[metric] for m in logged]
            assert row[f"{metric}_mean"] == pytest.approx(statistics.mean(values)), metric
            assert row[f"{metric}_std"] == pytest.approx(statistics.stdev(values)), metric


def test_csv_deltas_against_c3_pan_conv(report) -> None:
    table = pd.read_csv(report.variants_csv)
    ghost = variant_row(table, "ghost/pan/conv")
    assert ghost["delta_map50_95"] == pytest.approx((0.282 - 0.305) * 100)
    assert ghost["delta_gflops_pct"] == pytest.approx((2.5 / 4.5 - 1) * 100)
    assert ghost["delta_params_pct"] == pytest.approx((1_100_000 / 1_872_157 - 1) * 100)
    assert ghost["speedup"] == pytest.approx(21.0 / 12.5)
    assert bool(variant_row(table, "c3/pan/conv")["is_baseline"])


def test_csv_intervals_and_p_values_equal_scipy(report) -> None:
    table = pd.read_csv(report.variants_csv)
    base = [v[0] * 100 for v in COMPLETED["c3/pan/conv"]]
    p_values = {}
    for variant in ("ghost/pan/conv", "c3/slim/conv", "shufflenetv2/pan/conv"):
        row = variant_row(table, variant)
        mine = [v[0] * 100 for v in COMPLETED[variant]]
        expected = stats.ttest_rel(mine, base)  # seeds 0 and 1 on both sides: paired
        interval = expected.confidence_interval(0.95)
        assert row["test"] == "paired t"
        assert row["delta_map50_95_ci_low"] == pytest.approx(interval.low)
        assert row["delta_map50_95_ci_high"] == pytest.approx(interval.high)
        assert row["p_value"] == pytest.approx(expected.pvalue)
        p_values[variant] = expected.pvalue
    # Holm over the three comparisons of the table, by hand.
    ordered = sorted(p_values.items(), key=lambda item: item[1])
    running = 0.0
    for rank, (variant, p) in enumerate(ordered):
        running = max(running, min(1.0, p * (len(ordered) - rank)))
        assert variant_row(table, variant)["p_holm"] == pytest.approx(running)
    excludes_zero = (table["delta_map50_95_ci_low"] > 0) | (table["delta_map50_95_ci_high"] < 0)
    assert table["significant"].tolist() == ((table["p_holm"] < 0.05) & excludes_zero).tolist()
    markdown = report.markdown.read_text()
    assert "## Factor effects" in markdown


def test_two_recipes_are_two_rows_with_the_differing_key_named(store, tmp_path) -> None:
    _, uri = store
    experiment = "two-recipes"
    for epochs, shift in ((2, 0.0), (5, 0.05)):
        for seed in (0, 1):
            run = start_run(uri, "c3/pan/conv", seed, experiment=experiment, epochs=epochs)
            run.log_metrics(final_metrics(0.30 + shift + seed / 100, 4.5, 20.0, 1_872_157))
            run.finish("completed")
    files = write_report(ReportOptions(experiment=experiment, tracking_uri=uri,
                                       out=str(tmp_path)))
    table = pd.read_csv(files.variants_csv)
    assert len(table) == 2 and set(table["n_seeds"]) == {2}  # never one mean of four runs
    assert sorted(table["recipe_diff"]) == ["train.epochs=2", "train.epochs=5"]
    assert sorted(table["map50_95_mean"].round(4)) == [0.305, 0.355]
    markdown = files.markdown.read_text()
    assert "| c3/pan/conv · train.epochs=5 |" in markdown and "| c3/pan/conv · train.epochs=2 |" in markdown
    assert "**Several recipes**" in markdown
    # train.threads differs between seeds but is an execution key: not a recipe difference.
    assert "threads" not in " ".join(table["recipe_diff"])


def test_code_identity_and_data_warnings_reach_the_report(store, tmp_path) -> None:
    _, uri = store
    experiment = "code-and-data"
    for code in ("0.1.0+src.aaa", "0.1.0+src.bbb"):
        for seed in (0, 1):
            tags = {"code_identity": code, "data_issues": '{"train/corrupt_image": 1}'}
            run = start_run(uri, "c3/pan/conv", seed, experiment=experiment, extra_tags=tags)
            run.log_metrics(final_metrics(0.3 + seed / 100, 4.5, 20.0, 1_872_157))
            run.finish("completed")
    files = write_report(ReportOptions(experiment=experiment, tracking_uri=uri,
                                       out=str(tmp_path)))
    table = pd.read_csv(files.variants_csv)
    assert sorted(table["recipe_diff"]) == ["code=0.1.0+src.aaa", "code=0.1.0+src.bbb"]
    markdown = files.markdown.read_text()
    assert "Warning: data issues" in markdown and "train/corrupt_image" in markdown
    assert "**files skipped** by the readers" in markdown
    assert "**Reported split**: val (also used for model selection" in markdown


def test_pareto_marks(report) -> None:
    table = pd.read_csv(report.variants_csv)
    names = table["backbone"] + "/" + table["neck"] + "/" + table["operator"]
    on_gflops = set(names[table["pareto_gflops"]])
    on_latency = set(names[table["pareto_latency"]])
    # c3/pan/conv: c3/slim/conv has more mAP for fewer GFLOPs; shufflenetv2 is slower than ghost.
    assert on_gflops == {"shufflenetv2/pan/conv", "ghost/pan/conv", "c3/slim/conv"}
    assert on_latency == {"ghost/pan/conv", "c3/pan/conv", "c3/slim/conv"}


def test_failed_and_missing_cells(report) -> None:
    table = pd.read_csv(report.variants_csv)
    failed = variant_row(table, FAILED)
    assert failed["status"] == "failed" and failed["error"].endswith(ERROR)
    assert pd.isna(failed["map50_95_mean"])
    assert variant_row(table, "shufflenetv2/slim/conv")["status"] == "missing"
    markdown = report.markdown.read_text()
    assert f"**failed**: {ERROR}" in markdown and "**missing** (no run)" in markdown


def test_markdown_has_a_row_per_variant_and_the_conventions(report) -> None:
    markdown = report.markdown.read_text()
    main_table = markdown.split("## Main table")[1].split("## Cost and latency")[0]
    rows = [line for line in main_table.splitlines() if line.startswith("| ") and "---" not in line]
    assert len(rows) == 1 + 6
    assert "| c3/pan/conv | 2 | 1.872 ± 0.000 | 4.50 ± 0.00 |" in markdown
    assert "30.5 ± 0.7" in markdown  # mAP50-95 of the baseline in points
    assert "9 runs read (8 completed, 1 failed, 0 running)" in markdown
    assert "git abc1234" in markdown and "on cpu" in markdown and "epochs**: 2" in markdown
    for plot in report.plots:
        assert f"]({plot.name})" in markdown


def test_runs_csv_has_one_row_per_run(report) -> None:
    runs = pd.read_csv(report.runs_csv)
    assert len(runs) == 9
    assert runs["included"].sum() == 8
    assert set(runs.loc[~runs["included"], "status"]) == {"failed"}


def test_plots_are_png_images(report) -> None:
    assert sorted(p.name for p in report.plots) == ["map_vs_gflops.png", "map_vs_latency.png"]
    for path in report.plots:
        with Image.open(path) as image:
            assert image.format == "PNG" and image.width > 0 and image.height > 0


def test_cli_subprocess_writes_the_same_table_and_logs_a_report_run(store, report) -> None:
    root, uri = store
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    done = subprocess.run(
        [sys.executable, "-m", "lightyolo.report", f"experiment={EXPERIMENT}", "out=cli_out"],
        cwd=root, env=env, capture_output=True, text=True, timeout=300,
    )
    assert done.returncode == 0, done.stderr
    written = root / "cli_out" / EXPERIMENT
    assert str(written) in done.stdout
    # The report run that the first report logged is not read back as a grid cell.
    pd.testing.assert_frame_equal(
        pd.read_csv(written / "ablation.csv"), pd.read_csv(report.variants_csv)
    )
    # The second report replaced the first: one report run per experiment (no sweep here).
    reports = Store(uri).runs_frame(EXPERIMENT).query("`tags.kind` == 'report'")
    assert list(reports["run_name"]) == [f"report-{EXPERIMENT}"]


def test_experiment_without_runs_is_one_line_and_nonzero(store, capsys) -> None:
    _, uri = store
    assert main([f"tracking_uri={uri}", "experiment=empty"]) == 1
    message = capsys.readouterr().err.strip()
    assert len(message.splitlines()) == 1 and "has no completed runs" in message


def test_missing_store_is_one_line_and_nonzero(tmp_path: Path, monkeypatch, capsys) -> None:
    monkeypatch.chdir(tmp_path)
    assert main([]) == 1
    database = tmp_path.resolve() / "mlflow.db"
    assert capsys.readouterr().err.strip() == (
        f"lightyolo.report: no MLflow store at {database} "
        "(run a sweep there or pass tracking_uri=...)"
    )
    assert not database.exists()


def test_unknown_key_lists_the_valid_keys() -> None:
    valid = (r"\(valid keys: experiment, tracking_uri, baseline, out, runs_csv, margin, seeds, "
             r"seeds_first, seeds_cap\)")
    with pytest.raises(UsageError, match="unknown key 'exp' " + valid):
        parse_options(["exp=x"])
    with pytest.raises(UsageError, match="expected backbone/neck/operator"):
        write_report(ReportOptions(baseline="c3-pan"))
    assert main(["--help"]) == 0
