"""Aggregation, deltas and Pareto flags of the report on hand-built runs, hand-checked numbers."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest

from lightyolo.report.aggregate import (
    Baseline,
    add_comparisons,
    add_deltas,
    add_pareto_flags,
    aggregate_variants,
    one_factor_rows,
    pareto_optimal,
)
from lightyolo.report.collect import runs_table
from lightyolo.report.plots import _tradeoff_figure
from lightyolo.report import deployment
from lightyolo.report.main_table import cost_latency_table, main_table
from lightyolo.report.tables import comparison_verdict, one_factor_tables

BASELINE = Baseline("c3", "pan", "conv")


def raw_run(name: str, seed: int, status: str, start: int, **metrics: float) -> dict:
    """One row as `Store.runs_frame` returns it."""
    backbone, neck, operator = name.split("/")
    row = {
        "run_id": f"{backbone}-{neck}-{operator}-s{seed}-{start}",
        "run_name": f"{backbone}-{neck}-{operator}-s{seed}",
        "mlflow_status": "FAILED" if status == "failed" else "FINISHED",
        "start_time": start,
        "end_time": start + 1,
        "tags.backbone": backbone,
        "tags.neck": neck,
        "tags.operator": operator,
        "tags.dataset": "shapes",
        "tags.seed": str(seed),
        "params.model.scale": "n",
        "params.train.img_size": "320",
        "params.train.epochs": "3",
    }
    if status:
        row["tags.status"] = status
    if status == "failed":
        row["tags.error"] = "Traceback (most recent call last):\nRuntimeError: boom"
    row.update({f"metrics.{k}": v for k, v in metrics.items()})
    return row


def metrics(map50_95: float, gflops: float, latency: float, params: float) -> dict[str, float]:
    return {
        "map50_95": map50_95,
        "map50": map50_95 + 0.2,
        "gflops": gflops,
        "latency_ms": latency,
        "params": params,
        "params_m": params / 1e6,
    }


@pytest.fixture(scope="module")
def runs() -> pd.DataFrame:
    rows = [
        raw_run("c3/pan/conv", 0, "completed", 1, **metrics(0.30, 4.0, 10.0, 2.0e6)),
        raw_run("c3/pan/conv", 1, "completed", 2, **metrics(0.32, 4.0, 12.0, 2.0e6)),
        raw_run("ghost/pan/conv", 0, "completed", 3, **metrics(0.28, 2.0, 5.5, 1.5e6)),
        raw_run("ghost/pan/conv", 1, "failed", 4),  # a failed attempt, then a completed rerun
        raw_run("ghost/pan/conv", 1, "completed", 5, **metrics(0.30, 2.0, 5.5, 1.5e6)),
        raw_run("c3/slim/conv", 0, "completed", 6, **metrics(0.35, 3.0, 11.0, 1.8e6)),
        raw_run("c3/slim/conv", 1, "failed", 7),
        raw_run("c3/pan/involution", 0, "failed", 8),
        raw_run("c3/pan/involution", 1, "", 9),  # still running: no final status tag
        {**raw_run("c3/pan/conv", 0, "completed", 10), "tags.kind": "report", "run_name": "report"},
    ]
    return runs_table(pd.DataFrame(rows))


@pytest.fixture(scope="module")
def variants(runs: pd.DataFrame) -> pd.DataFrame:
    return report_variants(runs)


def report_variants(runs: pd.DataFrame) -> pd.DataFrame:
    """What write_report builds from the runs."""
    compared = add_comparisons(add_deltas(aggregate_variants(runs), BASELINE), runs, BASELINE)
    return add_pareto_flags(compared, runs)


def variant(variants: pd.DataFrame, name: str) -> pd.Series:
    backbone, neck, operator = name.split("/")
    row = variants[
        (variants["backbone"] == backbone)
        & (variants["neck"] == neck)
        & (variants["operator"] == operator)
    ]
    assert len(row) == 1, name
    return row.iloc[0]


def test_pareto_front_of_a_hand_checked_set() -> None:
    score = np.array([0.5, 0.4, 0.4, 0.5, np.nan, 0.3, 0.6])
    cost = np.array([10.0, 5.0, 6.0, 10.0, 1.0, 5.0, 20.0])
    # B(0.4, 5) dominates C (same mAP, costlier) and F (same cost, lower mAP); A and D tie;
    # the NaN point neither counts nor dominates; G is the most accurate.
    assert pareto_optimal(score, cost).tolist() == [True, True, False, True, False, False, True]


def test_report_runs_are_not_read_and_statuses_are_settled(runs: pd.DataFrame) -> None:
    assert len(runs) == 9
    assert runs["status"].value_counts().to_dict() == {"completed": 5, "failed": 3, "running": 1}
    assert runs["img_size"].tolist() == [320] * 9
    assert runs["seed"].tolist() == [0, 1, 0, 1, 1, 0, 1, 0, 1]


def test_mean_and_sample_std_over_seeds(variants: pd.DataFrame) -> None:
    base = variant(variants, "c3/pan/conv")
    assert base["n_seeds"] == 2 and base["seeds"] == "0,1"
    assert base["map50_95_mean"] == pytest.approx(0.31)
    assert base["map50_95_std"] == pytest.approx(math.sqrt(2 * 0.01**2))  # ddof=1
    assert base["latency_ms_mean"] == pytest.approx(11.0)
    assert base["latency_ms_std"] == pytest.approx(math.sqrt(2.0))
    assert base["gflops_std"] == pytest.approx(0.0)


def test_failed_runs_never_enter_means_and_a_completed_rerun_wins(variants: pd.DataFrame) -> None:
    ghost = variant(variants, "ghost/pan/conv")
    assert ghost["status"] == "completed" and ghost["n_seeds"] == 2 and ghost["n_failed"] == 0
    assert ghost["map50_95_mean"] == pytest.approx(0.29)
    slim = variant(variants, "c3/slim/conv")
    assert slim["n_seeds"] == 1 and slim["n_failed"] == 1
    assert slim["map50_95_mean"] == pytest.approx(0.35) and math.isnan(slim["map50_95_std"])


def test_failed_running_and_missing_cells(variants: pd.DataFrame) -> None:
    failed = variant(variants, "c3/pan/involution")
    assert failed["status"] == "failed" and failed["error"].endswith("RuntimeError: boom")
    assert math.isnan(failed["map50_95_mean"])
    missing = variants[variants["status"] == "missing"]
    names = sorted("/".join(r) for r in missing[["backbone", "neck", "operator"]].to_numpy())
    assert names == ["c3/slim/involution", "ghost/pan/involution", "ghost/slim/conv",
                     "ghost/slim/involution"]
    assert len(variants) == 8


def test_deltas_against_the_baseline(variants: pd.DataFrame) -> None:
    ghost = variant(variants, "ghost/pan/conv")
    assert ghost["delta_map50_95"] == pytest.approx(-2.0)
    assert ghost["delta_map50"] == pytest.approx(-2.0)
    assert ghost["delta_params_pct"] == pytest.approx(-25.0)
    assert ghost["delta_gflops_pct"] == pytest.approx(-50.0)
    assert ghost["speedup"] == pytest.approx(2.0)
    slim = variant(variants, "c3/slim/conv")
    assert slim["delta_map50_95"] == pytest.approx(4.0)
    assert slim["speedup"] == pytest.approx(1.0)
    assert variant(variants, "c3/pan/conv")["delta_map50_95"] == pytest.approx(0.0)


def test_delta_carries_a_paired_interval(variants: pd.DataFrame) -> None:
    ghost = variant(variants, "ghost/pan/conv")
    # seeds 0, 1 on both sides: paired differences −2 and −2 pts: no spread, so no p-value.
    assert ghost["test"] == "paired t"
    assert ghost["delta_map50_95_ci_low"] == pytest.approx(-2.0)
    assert not ghost["significant"]
    slim = variant(variants, "c3/slim/conv")
    assert math.isnan(slim["delta_map50_95_ci_low"]) and math.isnan(slim["p_holm"])
    assert comparison_verdict(slim).startswith("spread unknown")
    assert comparison_verdict(variant(variants, "c3/pan/conv")) == "baseline"


def test_pareto_flags_per_cost(variants: pd.DataFrame) -> None:
    flagged = variants[variants["pareto_gflops"]]
    assert sorted(flagged["backbone"] + "/" + flagged["neck"]) == ["c3/slim", "ghost/pan"]
    # c3/slim has the baseline's latency and more mAP: the baseline is dominated on both.
    flagged = variants[variants["pareto_latency"]]
    assert sorted(flagged["backbone"] + "/" + flagged["neck"]) == ["c3/slim", "ghost/pan"]


def test_deltas_are_nan_where_the_baseline_did_not_complete(runs: pd.DataFrame) -> None:
    other = raw_run("ghost/pan/conv", 0, "completed", 20, **metrics(0.28, 2.0, 5.5, 1.5e6))
    other_size = runs_table(pd.DataFrame([{**other, "params.train.img_size": "640"}]))
    variants = add_deltas(aggregate_variants(pd.concat([runs, other_size])), BASELINE)
    ghost_640 = variants[(variants["img_size"] == 640) & (variants["status"] == "completed")]
    assert len(ghost_640) == 1 and math.isnan(ghost_640["delta_map50_95"].iloc[0])


def test_one_factor_rows_hold_the_other_factors_at_the_baseline(variants: pd.DataFrame) -> None:
    neck_rows = one_factor_rows(variants, "neck", BASELINE)
    assert sorted(neck_rows["neck"]) == ["pan", "slim"]
    assert set(neck_rows["backbone"]) == {"c3"} and set(neck_rows["operator"]) == {"conv"}


def test_markdown_marks_failed_and_missing_cells(variants: pd.DataFrame) -> None:
    table = main_table(variants)
    lines = table.splitlines()
    assert len(lines) == 2 + 8
    assert "**failed**: RuntimeError: boom" in table
    assert table.count("**missing**") == 4
    # Zero spread (−2 on both seeds): no test, no interval, no decision; the wall-clock quick
    # speed-up is not a comparison column any more (issue 29).
    assert "| 31.0 ± 1.4 |" in table and "| -2.0 | unknown | 5.50 ± 0.00 |" in table
    assert "| ghost/pan/conv | -25.0 % | -50.0 % |" in cost_latency_table(variants)
    factor = one_factor_tables(variants, BASELINE)
    assert "### Effect of the backbone" in factor and "### Effect of the neck" in factor
    assert "spread unknown" in factor


def test_runs_without_a_seed_each_count_as_a_seed() -> None:
    rows = [
        raw_run("c3/pan/conv", 0, "completed", 1, **metrics(0.30, 4.0, 10.0, 2.0e6)),
        raw_run("c3/pan/conv", 0, "completed", 2, **metrics(0.34, 4.0, 12.0, 2.0e6)),
    ]
    unseeded = runs_table(pd.DataFrame(rows).drop(columns=["tags.seed"]))
    base = aggregate_variants(unseeded).iloc[0]
    assert base["n_seeds"] == 2 and base["map50_95_mean"] == pytest.approx(0.32)
    seeded = aggregate_variants(runs_table(pd.DataFrame(rows))).iloc[0]
    assert seeded["n_seeds"] == 1 and seeded["map50_95_mean"] == pytest.approx(0.34)  # newest


def test_the_baseline_is_not_compared_with_itself(variants: pd.DataFrame) -> None:
    base = variant(variants, "c3/pan/conv")
    assert base["verdict"] == "" and math.isnan(base["p_value"])


def test_plots_draw_map_in_points_and_mark_undecided_points(variants: pd.DataFrame) -> None:
    rows = variants[variants["status"] == "completed"]
    figure = _tradeoff_figure(rows, "gflops", "GFLOPs", "pareto_gflops", "t")
    axes = figure.axes[0]
    plotted = sorted(y for line in axes.lines for y in line.get_ydata())
    assert max(plotted) == pytest.approx(35.0) and min(plotted) > 20.0  # points, not 0.35
    assert "points" in axes.get_ylabel()
    legend = [t.get_text() for t in axes.get_legend().get_texts()]
    assert "Pareto front (point estimates)" in legend  # the front claims no more (issue 29)
    assert set(rows["pareto_gflops_status"]) <= {"optimal", "undecided", "dominated"}


def test_runs_without_identity_tags_split_by_code_version_and_reuse_joins_them() -> None:
    """Runs logged before the identity tags fall back on lightyolo_version / git_sha; runs
    tagged reuse_across_code=true were kept across code versions: one row, and it is said."""
    rows = []
    for start, (seed, sha) in enumerate([(0, "aaa"), (1, "aaa"), (0, "bbb"), (1, "bbb")]):
        run = raw_run("c3/pan/conv", seed, "completed", start, **metrics(0.3 + seed / 100, 4, 10, 2e6))
        rows.append({**run, "tags.git_sha": sha, "tags.lightyolo_version": "0.1.0"})
    variants = report_variants(runs_table(pd.DataFrame(rows)))
    assert sorted(variants["recipe_diff"]) == ["code=0.1.0 aaa", "code=0.1.0 bbb"]
    assert variants["n_seeds"].tolist() == [2, 2]
    reused = runs_table(pd.DataFrame([{**r, "tags.reuse_across_code": "true"} for r in rows]))
    joined = report_variants(reused)
    assert len(joined) == 1 and joined["n_seeds"].iloc[0] == 2  # newest run per seed
    from lightyolo.report.tables import conventions_block
    text = conventions_block(reused, joined, experiment="e", tracking_uri="u", baseline=BASELINE)
    assert "4 run(s) kept across code versions" in text


def test_val_equal_to_train_is_warned() -> None:
    run = raw_run("c3/pan/conv", 0, "completed", 1, **metrics(0.3, 4, 10, 2e6))
    split = {"images": "images/train2017", "labels": "labels/train2017"}
    for part in ("train", "val"):
        run.update({f"params.dataset.{part}.{k}": v for k, v in split.items()})
    runs = runs_table(pd.DataFrame([run, {**run, "run_id": "x", "tags.eval_split": "val"}]))
    from lightyolo.report.tables import conventions_block
    text = conventions_block(runs, report_variants(runs), experiment="e", tracking_uri="u",
                             baseline=BASELINE)
    assert "**Warning: val is the train set** for shapes" in text


def test_factor_effects_section_of_a_complete_grid_of_logged_runs() -> None:
    """A complete 2 × 2 grid (backbone × neck), 3 seeds, in the shape collect.py produces:
    the slim neck costs 2 pts whatever the backbone, ghost costs 1 pt."""
    rng = np.random.default_rng(5)
    rows, start = [], 0
    for backbone in ("c3", "ghost"):
        for neck in ("pan", "slim"):
            for seed in range(3):
                value = 0.30 - 0.02 * (neck == "slim") - 0.01 * (backbone == "ghost")
                value += rng.normal(0, 0.0003)
                start += 1
                rows.append(raw_run(f"{backbone}/{neck}/conv", seed, "completed", start,
                                    **metrics(value, 4.0, 10.0, 2e6)))
    runs = runs_table(pd.DataFrame(rows))
    from lightyolo.report.tables import factor_effects_section
    text = factor_effects_section(runs, report_variants(runs), BASELINE)
    assert "### backbone × neck" in text
    assert "**neck slim** vs pan: costs 2.0 pts" in text
    assert "**backbone ghost** vs c3: costs 1.0 pts" in text
    assert "(p_holm 0.000), whatever the backbone (no interaction detected)." in text
    assert "backbone × neck: no interaction detected" in text
    partial = runs[~((runs["backbone"] == "ghost") & (runs["neck"] == "slim"))]
    text = factor_effects_section(partial, report_variants(partial), BASELINE)
    assert "Incomplete grid" in text and "ghost/slim: no completed run" in text


def test_speedups_from_the_bench_stage_intervals() -> None:
    rows = []
    for start, (name, median) in enumerate([("c3/pan/conv", 20.0), ("ghost/pan/conv", 10.0)]):
        for seed in (0, 1):
            run = raw_run(name, seed, "completed", 2 * start + seed, **metrics(0.3, 4, 10, 2e6))
            run.update({"metrics.bench/ort_cpu/median_ms": median + seed,
                        "metrics.bench/ort_cpu/ci_low_ms": median + seed - 0.5,
                        "metrics.bench/ort_cpu/ci_high_ms": median + seed + 0.5})
            rows.append(run)
    runs = runs_table(pd.DataFrame(rows))
    from lightyolo.report.aggregate import add_speedups
    variants = add_speedups(add_deltas(aggregate_variants(runs), BASELINE), runs, BASELINE)
    ghost = variant(variants, "ghost/pan/conv")
    assert ghost["speedup_ort_cpu"] == pytest.approx(20.5 / 10.5)
    assert ghost["speedup_ort_cpu_low"] == pytest.approx(19.5 / 11.5)  # envelope of the seeds
    assert ghost["speedup_ort_cpu_high"] == pytest.approx(21.5 / 9.5)
    assert ghost["speedup_ort_cpu_verdict"].startswith("faster: 1.95×")
    assert variant(variants, "c3/pan/conv")["speedup_ort_cpu"] == pytest.approx(1.0)
    compared = add_comparisons(variants, runs, BASELINE)
    table = one_factor_tables(compared, BASELINE)
    assert "speed-up ort_cpu [interval]" in table and "faster: 1.95× [1.70, 2.26]" in table


def in_sweep(row: dict, sweep: str) -> dict:
    return {**row, "tags.sweep_id": sweep}


def sweep_parent(sweep: str, grid: dict[str, str]) -> dict:
    """A sweep's parent run as `store.runs.start_sweep_run` logs it."""
    return {"run_id": f"parent-{sweep}", "run_name": f"sweep-{sweep}", "mlflow_status": "FINISHED",
            "start_time": 0, "end_time": 1, "tags.kind": "sweep", "params.sweep_dir": sweep,
            "params.grid": json.dumps(grid)}


def test_missing_cells_are_those_the_sweeps_asked_for() -> None:
    # One-factor-at-a-time: backbones on pan/conv, then c3 with slim (three seeds asked,
    # one cell never ran). The combinations nobody launched (ghost/slim) are not "missing".
    done = metrics(0.3, 1.0, 1.0, 1e6)
    rows = [
        sweep_parent("multirun/a", {"backbone": "c3,ghost", "neck": "pan", "seed": "0"}),
        sweep_parent("multirun/b", {"backbone": "c3", "neck": "slim,choice(pan)", "operator": "conv,involution"}),
        in_sweep(raw_run("c3/pan/conv", 0, "completed", 1, **done), "multirun/a"),
        in_sweep(raw_run("ghost/pan/conv", 0, "completed", 2, **done), "multirun/a"),
        in_sweep(raw_run("c3/slim/conv", 0, "completed", 3, **done), "multirun/b"),
    ]
    table = runs_table(pd.DataFrame(rows))
    assert len(table) == 3  # the parents are no cells
    rows_of = aggregate_variants(table)
    missing = rows_of[rows_of["status"] == "missing"]
    # sweep b's neck is a Hydra function: its own cells say slim; operator is listed
    assert ["/".join(r) for r in missing[["backbone", "neck", "operator"]].to_numpy()] == ["c3/slim/involution"]
    assert len(rows_of) == 4
    # without the parents, every observed combination is expected, as before
    alone = aggregate_variants(runs_table(pd.DataFrame(rows[2:])))
    assert sorted("/".join(r) for r in alone[alone["status"] == "missing"][["backbone", "neck", "operator"]]
                  .to_numpy()) == ["ghost/slim/conv"]


def test_the_main_table_spells_out_every_pareto_status(runs: pd.DataFrame, variants: pd.DataFrame) -> None:
    statuses = variants.copy()
    statuses["pareto_gflops_status"] = ["optimal", "dominated", "undecided", *[""] * (len(statuses) - 3)]
    lines = main_table(statuses).splitlines()
    column = lines[0].split(" | ").index("Pareto (GFLOPs · quick latency)")
    cells = [line.split(" | ")[column].split(" · ")[0] for line in lines[2:5]]
    assert cells == ["front", "dominated", "undecided"]  # no ★ (issue 29)
    from lightyolo.report.tables import conventions_block
    text = conventions_block(runs, statuses, experiment="e", tracking_uri="u", baseline=BASELINE)
    assert "*front* when nothing beats it even so, on the point estimates" in text


def test_cells_that_differ_only_in_their_head_are_separate_rows() -> None:
    """The deployment section groups runs by every factor, the head included (two heads of one
    backbone/neck/operator were once averaged into one row), and names them as runs are named."""
    assert "head" in deployment.VARIANT_COLUMNS
    assert deployment._variant({"backbone": "c3", "neck": "pan", "operator": "conv", "head": "v8"}) == "c3/pan/conv/v8"
    assert deployment._variant({"backbone": "c3", "neck": "pan", "operator": "conv", "head": "v5"}) == "c3/pan/conv"


def test_the_variant_label_names_the_context_keys_that_differ_numpy_or_not() -> None:
    """Pandas hands numbers over as numpy scalars: an image size that differs between rows
    must still be named (a numpy int is no Python int)."""
    from lightyolo.report.cells import variant_label
    row = pd.Series({"backbone": "c3", "neck": "pan", "operator": "conv", "head": "v8",
                     "img_size": np.int64(320), "dataset": "shapes", "recipe_diff": ""})
    assert variant_label(row, ["img_size", "dataset", "recipe_diff"]) == "c3/pan/conv/v8 · 320 · shapes"
