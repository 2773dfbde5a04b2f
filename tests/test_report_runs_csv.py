"""Issue 29: the report rebuilt from a report's own runs.csv (no MLflow store), on the
example committed at cfff824 (tests/data/lightweight/runs.csv, 18 runs), with the new rules: the numbers
of the verdicts, the one rule, and the sequential replay of `seeds=adaptive`."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats as scipy_stats

from lightyolo.report.cli import ReportOptions, write_report
from lightyolo.report.collect import ReportError

RUNS_CSV = Path(__file__).resolve().parent / "data" / "lightweight" / "runs.csv"  # cfff824's example (data/README.md)


@pytest.fixture(scope="module")
def rebuilt(tmp_path_factory):
    out = tmp_path_factory.mktemp("rebuilt")
    files = write_report(ReportOptions(runs_csv=str(RUNS_CSV), out=str(out)))
    return files, pd.read_csv(files.variants_csv), files.markdown.read_text()


def row(table: pd.DataFrame, name: str) -> pd.Series:
    b, n, o = name.split("/")
    return table[(table["backbone"] == b) & (table["neck"] == n) & (table["operator"] == o)].iloc[0]


def test_the_rebuilt_report_names_its_source_and_keeps_the_cells(rebuilt) -> None:
    files, table, markdown = rebuilt
    assert files.experiment == "lightweight" and len(table) == 6
    assert "`lightweight` at `runs.csv" in markdown and "missing" not in set(table["status"])


def test_mobilenetv3_is_undecided_with_its_holm_adjusted_interval(rebuilt) -> None:
    _, table, markdown = rebuilt
    runs = pd.read_csv(RUNS_CSV)
    base = runs[runs["run_name"].str.startswith("c3-pan-conv")].sort_values("seed")["map50_95"]
    mine = runs[runs["run_name"].str.startswith("mobilenetv3-pan-conv")].sort_values("seed")["map50_95"]
    d = (mine.to_numpy() - base.to_numpy()) * 100
    m = row(table, "mobilenetv3/pan/conv")
    assert m["p_value"] == pytest.approx(scipy_stats.ttest_1samp(d, 0).pvalue)
    assert m["p_holm"] == pytest.approx(0.085, abs=0.001)
    k = m["p_holm"] / m["p_value"]  # its Holm multiplier
    half = scipy_stats.t.ppf(1 - 0.05 / k / 2, 2) * d.std(ddof=1) / math.sqrt(3)
    assert (m["delta_map50_95_adj_low"], m["delta_map50_95_adj_high"]) == pytest.approx(
        (d.mean() - half, d.mean() + half))
    assert m["decision"] == "undecided" and not m["significant"]
    assert m["verdict"].startswith("undecided with 3 seeds (not enough seeds)")
    assert "better" not in m["verdict"]
    # The one rule in Pareto: MobileNetV3 no longer "dominates" the baseline on GFLOPs.
    assert row(table, "c3/pan/conv")["pareto_gflops_status"] != "dominated"
    assert "★" not in markdown


def test_the_conventions_say_what_the_data_and_recipe_are(rebuilt) -> None:
    _, _, markdown = rebuilt
    assert "kept as background (no objects): test 23, train 29, val 7" in markdown
    assert "skipped" not in markdown.split("**Data**")[1].split("\n")[0]
    assert "chosen so that seeds agree, judged on the test split" in markdown
    assert "explains 50% of the round medians' variance, lag-1 autocorrelation +0.76" in markdown
    assert "is the one-factor table of the backbone above" in markdown


def test_latency_intervals_are_recomputed_from_the_round_medians(rebuilt) -> None:
    from lightyolo.bench.stage import shared_state_interval
    _, table, _ = rebuilt
    runs = pd.read_csv(RUNS_CSV)
    method = "onnxruntime_cpu_t1_b1_128_cputime"
    c3 = runs[runs["run_name"].str.startswith("c3-pan-conv")]
    own = [shared_state_interval(np.array(json.loads(v))) for v in c3[f"bench/{method}/round_medians"]]
    base = row(table, "c3/pan/conv")
    assert base[f"latency_{method}_ms_ci_low"] == pytest.approx(min(lo for lo, _ in own))
    assert base[f"latency_{method}_ms_ci_high"] == pytest.approx(max(hi for _, hi in own))


def test_seeds_adaptive_replays_the_sequential_looks(tmp_path) -> None:
    files = write_report(ReportOptions(runs_csv=str(RUNS_CSV), out=str(tmp_path),
                                       seeds="adaptive", seeds_first="3", seeds_cap="8"))
    table = pd.read_csv(files.variants_csv)
    ghost = row(table, "ghost/pan/conv")
    assert ghost["procedure"].startswith("sequential, decided at look 1 (3 seeds; 0 extra cell(s)")
    assert ghost["decision"] == "undecided"
    markdown = files.markdown.read_text()
    assert "**Seeds: adaptive**" in markdown and "Cells trained: 18 (a fixed 5 seeds per cell: 30" in markdown


def test_a_bad_runs_csv_is_one_line_naming_it(tmp_path) -> None:
    bad = tmp_path / "runs.csv"
    bad.write_text("a,b\n1,2\n")
    with pytest.raises(ReportError, match=r"runs_csv=.*runs.csv: expected a report's runs.csv; missing columns"):
        write_report(ReportOptions(runs_csv=str(bad), out=str(tmp_path)))
