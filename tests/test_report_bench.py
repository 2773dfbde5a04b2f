"""The report on the bench stage's figures: three tiny cells trained with pipeline.run, measured
interleaved by `bench_runs` (torch and ONNX Runtime, a few rounds), then reported; plus the
seed combination, pairing and rank correlation on hand-built runs."""

from __future__ import annotations

import itertools
import json
import re

import numpy as np
import onnxruntime as ort
import pandas as pd
import pytest
from scipy import stats as scipy_stats

from lightyolo import pipeline
from lightyolo.bench.experiment import BenchSettings, bench_runs
from lightyolo.bench.stage import shared_state_interval
from lightyolo.report import stats
from lightyolo.report.aggregate import (
    INTERVALS, PAIRED, Baseline, add_comparisons, add_deltas, add_pareto_flags, add_speedups, aggregate_variants,
)
from lightyolo.report.cli import ReportOptions, write_report
from lightyolo.report.collect import read_runs, runs_table
from lightyolo.report.main_table import cost_latency_table
from lightyolo.report.tables import flops_latency_section
from lightyolo.store.client import Store
from lightyolo.store.queries import completed_runs
from lightyolo.store.runs import RunTracker

from conftest import compose_config, tiny_overrides

EXPERIMENT = "benchreport"
CELLS = ("c3/pan/conv", "ghost/pan/conv", "c3/slim/conv")
SETTINGS = BenchSettings(rounds=4, warmup=1, iters=2)  # default clock: CPU time at 1 thread
METHODS = ("onnxruntime_cpu_t1_b1_64_cputime", "torch_cpu_t1_b1_64_cputime")
BASELINE = Baseline("c3", "pan", "conv")


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    """Three completed tiny cells, benched once, reported once."""
    tmp = tmp_path_factory.mktemp("benchreport")
    for cell in CELLS:
        backbone, neck, operator = cell.split("/")
        overrides = [f"backbone={backbone}", f"neck={neck}", f"operator={operator}"]
        cfg = compose_config(tiny_overrides(tmp) + [f"experiment={EXPERIMENT}", *overrides])
        assert pipeline.run(cfg, output_dir=tmp / cell.replace("/", "-")).status == "completed"
    uri = cfg.mlflow.tracking_uri
    bench_runs(uri, EXPERIMENT, SETTINGS, log=lambda _: None)
    files = write_report(ReportOptions(experiment=EXPERIMENT, tracking_uri=uri, out=str(tmp / "out")))
    return uri, files, pd.read_csv(files.variants_csv)


def exact_permutation_p(x, y) -> float:
    """Two-sided p of Spearman's ρ over every pairing of x with y (n! of them)."""
    observed = abs(scipy_stats.spearmanr(x, y).statistic)
    rhos = [abs(scipy_stats.spearmanr(np.array(p), y).statistic) for p in itertools.permutations(x)]
    return float(np.mean(np.array(rhos) >= observed - 1e-12))


def by_cell(table: pd.DataFrame) -> dict[str, pd.Series]:
    return {f"{r.backbone}/{r.neck}/{r.operator}": r for _, r in table.iterrows()}


def test_markdown_states_each_method_in_full_and_labels_the_quick_figure(report) -> None:
    _, files, _ = report
    markdown = files.markdown.read_text()
    conventions = markdown.split("## Main table")[0]
    assert "**Quick latency** (`quick/latency_ms`, a **quick figure**" in conventions
    assert "BatchNorm unfused" in conventions
    for method in METHODS:
        line = next(l for l in conventions.splitlines() if l.startswith(f"- **Latency `{method}`**"))
        runtime = method.split("_cpu")[0]
        version = ort.__version__ if runtime == "onnxruntime" else __import__("torch").__version__
        assert f"(bench stage): {runtime} {version} on cpu (" in line
        assert "1 intra-op thread(s)" in line and "batch 1, 64×64 px" in line
        assert "4 rounds × (1 warm-up + 2 timed passes), 3 cells interleaved" in line
        assert "clock: process CPU time" in line and "BatchNorm fused" in line
        assert "contiguous NCHW" in line
    assert "median of its runs' medians" in conventions and "paired by round" in conventions
    main = markdown.split("## Main table")[1].split("## Cost and latency")[0]
    cost = markdown.split("## Cost and latency")[1].split("## Tradeoffs")[0]
    header = next(line for line in main.splitlines() if line.startswith("| variant |"))
    assert len(header.strip("|").split(" | ")) <= 12  # issue 27: the main table stays readable
    for method in METHODS:
        assert f"| speed-up {method.split('_cpu')[0]} [95 % CI] |" in main
        assert f"| {method} (ms) [95 % CI] | speed-up {method} [95 % CI] | Pareto {method} |" in cost
    assert "FPS" not in main and "FPS" not in cost  # the quick figure's extras give way to the bench


def test_csv_has_each_methods_latency_and_paired_speedup_with_cis(report) -> None:
    uri, files, table = report
    cells = by_cell(table[table["status"] == "completed"])
    assert sorted(cells) == sorted(CELLS)
    runs = {r.run_name: r for r in completed_runs(Store(uri), EXPERIMENT)}
    for method in METHODS:
        columns = [f"latency_{method}_ms{s}" for s in ("", "_ci_low", "_ci_high")]
        columns += [f"speedup_{method}{s}" for s in ("", "_low", "_high")]
        assert set(columns) <= set(table.columns)
        for cell, row in cells.items():
            run = runs[f"{cell.replace('/', '-')}-s0"]
            assert row[f"latency_{method}_ms"] == pytest.approx(run.metrics[f"bench/{method}/median_ms"])
            assert row[f"latency_{method}_ms_ci_low"] <= row[f"latency_{method}_ms"] <= row[f"latency_{method}_ms_ci_high"]
            assert row[f"speedup_{method}_basis"] == PAIRED
            assert row[f"pareto_{method}_status"] in ("optimal", "undecided", "dominated")
        base = cells["c3/pan/conv"]
        assert (base[f"speedup_{method}"], base[f"speedup_{method}_low"], base[f"speedup_{method}_high"]) == (1, 1, 1)
        # The ghost cell's speed-up is the median of the per-round ratios of the two artifacts.
        rounds = {}
        for cell in ("c3/pan/conv", "ghost/pan/conv"):
            run_id = runs[f"{cell.replace('/', '-')}-s0"].run_id
            path = Store(uri).download_artifact(run_id, f"bench/{method}.json", files.directory / cell.replace("/", "-"))
            rounds[cell] = np.array(json.loads(path.read_text())["round_medians_ms"])
        ghost = cells["ghost/pan/conv"]
        ratios = rounds["c3/pan/conv"] / rounds["ghost/pan/conv"]
        assert len(ratios) == SETTINGS.rounds
        assert ghost[f"speedup_{method}"] == pytest.approx(np.median(ratios))
        assert ghost[f"speedup_{method}_low"] <= ghost[f"speedup_{method}"] <= ghost[f"speedup_{method}_high"]


def test_rank_correlation_line_per_method(report) -> None:
    _, files, table = report
    table = table[table["status"] == "completed"]
    markdown = files.markdown.read_text()
    section = markdown.split("## Do GFLOPs predict latency?")[1].split("## ")[0]
    for method in METHODS:
        line = next(l for l in section.splitlines() if l.startswith(f"- **`{method}`**"))
        g, latency = table["gflops_mean"].to_numpy(), table[f"latency_{method}_ms"].to_numpy()
        rho = scipy_stats.spearmanr(g, latency).statistic
        match = re.search(r"Spearman ρ = ([+-]\d\.\d\d) \(permutation p = (\d\.\d{3})\) over 3 variant", line)
        assert match, line
        assert float(match[1]) == pytest.approx(rho, abs=0.005)
        assert float(match[2]) == pytest.approx(exact_permutation_p(g, latency), abs=0.0005)
        inverted = any(g[i] < g[j] and latency[i] > latency[j] for i in range(3) for j in range(3))
        if inverted:
            assert "Fewer FLOPs but slower beyond the 95 % CIs" in line or "with fewer FLOPs are slower by the medians only" in line
        else:
            assert "No pair where fewer FLOPs run slower." in line


def test_latency_plots_are_drawn_per_method(report) -> None:
    _, files, _ = report
    names = sorted(p.name for p in files.plots)
    assert names == sorted(["map_vs_gflops.png", *(f"map_vs_latency_{m}.png" for m in METHODS)])
    assert all(p.stat().st_size > 0 for p in files.plots)


# --- hand-built runs: seeds, pairing, unreadable artifacts -------------------------------

M = "ort_cpu_t1_b1_320"


def hand_run(cell: str, seed: int, median: float, tag: str) -> dict:
    backbone, neck, operator = cell.split("/")
    return {
        "run_id": f"{cell}-{seed}", "run_name": f"{cell}-{seed}", "mlflow_status": "FINISHED",
        "start_time": seed, "end_time": seed + 1, "tags.backbone": backbone, "tags.neck": neck,
        "tags.operator": operator, "tags.dataset": "shapes", "tags.seed": str(seed),
        "tags.status": "completed", "params.model.scale": "n", "params.train.img_size": "320",
        "metrics.map50_95": 0.3, "metrics.map50": 0.5, "metrics.gflops": 4.0 if cell == "c3/pan/conv" else 2.0,
        f"metrics.bench/{M}/median_ms": median, f"metrics.bench/{M}/ci_low_ms": median - 1,
        f"metrics.bench/{M}/ci_high_ms": median + 1, f"tags.bench/{M}": tag,
    }


def hand_variants(rows: list[dict], rounds: dict[str, list[float] | None]) -> pd.DataFrame:
    runs = runs_table(pd.DataFrame(rows))
    runs[f"bench/{M}/round_medians"] = [rounds[r] for r in runs["run_id"]]
    variants = add_comparisons(add_deltas(aggregate_variants(runs), BASELINE), runs, BASELINE)
    return add_pareto_flags(add_speedups(variants, runs, BASELINE), runs)


def test_seeds_combine_by_median_and_pair_by_round() -> None:
    tag = json.dumps({"img": 320, "rounds": 3})
    rounds = {"c3/pan/conv-0": [20.0, 22.0, 21.0], "c3/pan/conv-1": [20.0, 24.0, 21.0],
              "c3/pan/conv-2": [22.0, 26.0, 23.0],
              "ghost/pan/conv-0": [10.0, 11.0, 10.5], "ghost/pan/conv-1": [10.0, 12.0, 11.5]}
    rows = [hand_run("c3/pan/conv", s, m, tag) for s, m in ((0, 21.0), (1, 21.0), (2, 23.0))]
    rows += [hand_run("ghost/pan/conv", s, m, tag) for s, m in ((0, 10.5), (1, 11.5))]
    cells = by_cell(hand_variants(rows, rounds))
    base, ghost = cells["c3/pan/conv"], cells["ghost/pan/conv"]
    assert base[f"latency_{M}_ms"] == 21.0  # median of the seeds' medians 21, 21, 23
    # The envelope of the seeds' intervals, each recomputed from its round medians (issue 29:
    # the shared-state interval replaces the logged round bootstrap).
    own = [shared_state_interval(np.array(rounds[f"c3/pan/conv-{s}"])) for s in range(3)]
    assert (base[f"latency_{M}_ms_ci_low"], base[f"latency_{M}_ms_ci_high"]) == pytest.approx(
        (min(low for low, _ in own), max(high for _, high in own)))
    assert ghost[f"latency_{M}_ms"] == 11.0
    per_round = np.array([20.0, 24.0, 21.0]) / np.array([10.0, 11.5, 11.0])  # medians over seeds
    assert ghost[f"speedup_{M}"] == pytest.approx(np.median(per_round))
    assert ghost[f"speedup_{M}_basis"] == PAIRED
    assert ghost[f"latency_{M}_img"] == 320
    # A cell measured in another bench run (another tag) is compared through the two CIs.
    rows[-1][f"tags.bench/{M}"] = json.dumps({"img": 320, "rounds": 5})
    ghost = by_cell(hand_variants(rows, rounds))["ghost/pan/conv"]
    assert ghost[f"speedup_{M}_basis"] == INTERVALS
    assert ghost[f"speedup_{M}"] == pytest.approx(21.0 / 11.0)
    ghost_high = max(shared_state_interval(np.array(rounds[f"ghost/pan/conv-{s}"]))[1] for s in (0, 1))
    assert ghost[f"speedup_{M}_low"] == pytest.approx(base[f"latency_{M}_ms_ci_low"] / ghost_high)


def test_fewer_flops_but_slower_is_named_and_rank_correlation_follows_scipy() -> None:
    tag = json.dumps({"img": 320})
    rows = [hand_run("c3/pan/conv", 0, 10.0, tag), hand_run("ghost/pan/conv", 0, 14.0, tag),
            hand_run("c3/slim/conv", 0, 12.5, tag)]
    rows[2]["metrics.gflops"] = 3.0
    variants = hand_variants(rows, {r["run_id"]: None for r in rows})
    text = flops_latency_section(variants)
    assert "Spearman ρ = -1.00 (permutation p = 0.333)" in text  # 2 of the 3! pairings reach |ρ| = 1
    assert "inverse: more FLOPs tend to run faster here (not significant with 3 variants)" in text
    assert ("ghost/pan/conv n@320 (2 GFLOPs, 14.00 ms) vs c3/pan/conv n@320 (4 GFLOPs, "
            "10.00 ms)") in text  # beyond the CIs: 13 > 11
    assert "c3/slim/conv n@320 (3 GFLOPs, 12.50 ms) vs c3/pan/conv" in text  # 11.5 > 11
    assert "1 more pair(s) with fewer FLOPs are slower by the medians only" in text  # ghost vs slim: 13 < 13.5
    assert f"| {M} (ms) [95 % CI] |" in cost_latency_table(variants)
    assert np.isnan(stats.flops_rank_correlation([1.0, 2.0], [2.0, 1.0]).rho)  # two points: no ρ
    result = stats.flops_rank_correlation([1.0, 2.0, 3.0, 4.0], [1.0, 3.0, 2.0, 4.0])
    expected = scipy_stats.spearmanr([1, 2, 3, 4], [1, 3, 2, 4]).statistic
    assert (result.rho, result.p_value, result.n) == pytest.approx(
        (expected, exact_permutation_p([1.0, 2.0, 3.0, 4.0], [1.0, 3.0, 2.0, 4.0]), 4))


def test_an_unreadable_round_medians_file_is_named_and_skipped(tmp_path, capsys) -> None:
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    run = RunTracker.start(Store(uri), "badbench", run_name="c3-pan-conv-s0",
                                    tags={"backbone": "c3", "neck": "pan", "operator": "conv"}, params={})
    run.log_metrics({f"bench/{M}/median_ms": 10.0, f"bench/{M}/ci_low_ms": 9.0, f"bench/{M}/ci_high_ms": 11.0})
    bad = tmp_path / f"{M}.json"
    bad.write_text('{"round_medians_ms": "fast"}')
    run.log_artifact(bad, "bench")
    run.finish("completed")
    runs = read_runs(uri, "badbench")
    assert runs[f"bench/{M}/round_medians"].iloc[0] is None
    err = [l for l in capsys.readouterr().err.splitlines() if l.startswith("lightyolo.report:")]
    assert len(err) == 1 and f"bench/{M}.json" in err[0] and run.run_id in err[0]


def test_gflops_at_640_is_shown_and_ranks_a_method_measured_at_640() -> None:
    tag = json.dumps({"img": 640})  # the bench ran at 640 px; the runs trained at 320
    rows = [hand_run(cell, 0, median, tag)
            for cell, median in (("c3/pan/conv", 40.0), ("ghost/pan/conv", 30.0), ("c3/slim/conv", 35.0))]
    for row, at_640 in zip(rows, (16.0, 8.0, 12.0)):
        row["metrics.gflops_640"] = at_640
    variants = hand_variants(rows, {r["run_id"]: None for r in rows})
    table = cost_latency_table(variants)
    assert "| ΔGFLOPs | GFLOPs@640 |" in table and "| +0.0 % | 16.00 |" in table
    text = flops_latency_section(variants)
    assert "Spearman ρ = +1.00" in text and "over 3 variant(s)" in text
    del rows[0]["metrics.gflops_640"]  # a variant with no count at the measured size is left out
    text = flops_latency_section(hand_variants(rows, {r["run_id"]: None for r in rows}))
    assert "not estimable over 2 variant(s)" in text
