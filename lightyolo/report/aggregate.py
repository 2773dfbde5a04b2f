"""Per-run rows → per-variant rows: mean ± std over seeds, deltas to a baseline, Pareto flags.

The arithmetic behind the ablation tables that papers print by hand (e.g. the one-factor
tables of slim-neck, arXiv 2206.02424, and of GhostNet, arXiv 1911.11907):

- a variant is one (backbone, neck, operator) under one recipe: the run's identity minus the
  seed (collect.py, `recipe`), so runs of different epochs, lr, augmentation, dataset
  content or code are separate rows, never one mean; its seeds are its completed runs, the
  newest one per seed; failed runs never enter a mean;
- std is the sample standard deviation over seeds (ddof=1), NaN for a single seed;
- deltas compare the means with the baseline (backbone, neck, operator) of the same recipe:
  mAP in points (×100 of the fractions MLflow holds) with a 95 % CI, p and Holm-adjusted p
  over the comparisons of the recipe (stats.py), params and GFLOPs in %, speed-up as
  baseline latency / variant latency; the bench stage's latencies per method (median of the
  seeds' medians) with speed-ups paired by round where both cells share a bench run;
- a variant is Pareto-optimal when no other variant of its context (dataset, scale, image
  size; for latency also the device) has ≥ mAP50-95 and ≤ cost with at least one strict;
  a non-optimal one is "dominated" only beyond the uncertainty, else "undecided".
"""

from __future__ import annotations

import json
from typing import NamedTuple

import numpy as np
import pandas as pd

from lightyolo.configs import DEFAULT_HEAD
from lightyolo.report import stats
from lightyolo.report.collect import (
    CONTEXT_KEYS,
    FACTOR_KEYS,
    FINAL_METRICS,
    VARIANT_KEYS,
    BENCH_PARTS,
    bench_methods,
    recipe_differences,
)

POINTS = 100.0  # mAP fractions → percentage points
# How a bench speed-up's interval was made (`speedup_<method>_basis`).
PAIRED = "paired rounds"
INTERVALS = "intervals"
# The columns one report row is keyed by: the coordinates, and the rest of the identity.
ROW_KEYS: tuple[str, ...] = (*VARIANT_KEYS, "recipe")


class Baseline(NamedTuple):
    """The (backbone, neck, operator, head) every delta is measured against."""

    backbone: str
    neck: str
    operator: str
    head: str = DEFAULT_HEAD

    @classmethod
    def parse(cls, text: str) -> "Baseline":
        parts = text.split("/")
        if len(parts) not in (3, 4) or not all(parts):
            raise ValueError(
                f"baseline={text!r}: expected backbone/neck/operator[/head], e.g. c3/pan/conv or c3/pan/conv/v8"
            )
        return cls(*parts)

    def __str__(self) -> str:
        """c3/pan/conv, with the head only when it is not the default (c3/pan/conv/v8)."""
        return "/".join(self if self.head != DEFAULT_HEAD else self[:3])


def pareto_optimal(score: np.ndarray, cost: np.ndarray) -> np.ndarray:
    """True where no other point has score ≥ and cost ≤ with at least one strict.

    Points with a NaN score or cost are never optimal and dominate nothing. Exact ties are
    all optimal (neither dominates the other).
    """
    score = np.asarray(score, dtype=float)
    cost = np.asarray(cost, dtype=float)
    valid = ~(np.isnan(score) | np.isnan(cost))
    optimal = valid.copy()
    for i in np.flatnonzero(valid):
        no_worse = valid & (score >= score[i]) & (cost <= cost[i])
        strictly_better = (score > score[i]) | (cost < cost[i])
        if np.any(no_worse & strictly_better):
            optimal[i] = False
    return optimal


def included_runs(runs: pd.DataFrame) -> pd.DataFrame:
    """The runs that enter the means: completed ones, the newest per (variant, seed); a run
    that logged no seed counts as a seed of its own."""
    completed = runs[runs["status"] == "completed"].sort_values("start_time", kind="stable")
    seeded = completed[completed["seed"].notna()]
    newest = seeded.drop_duplicates([*ROW_KEYS, "seed"], keep="last")
    return pd.concat([newest, completed[completed["seed"].isna()]]).sort_values(
        "start_time", kind="stable"
    )


def aggregate_variants(runs: pd.DataFrame) -> pd.DataFrame:
    """One row per variant of the grid (see module docstring) with columns ROW_KEYS,
    recipe_diff (the keys where its recipe differs from the other recipes of its context,
    "" when there is one), status (completed / failed / running / missing), n_seeds, seeds,
    n_failed, latency_device, error, then `<metric>_mean` and `<metric>_std` per final metric.

    Missing variants are the cells of a recipe that have no run under it: those its runs'
    sweeps were launched for (`requested_cells`), or, with no sweep known, every combination
    of the backbone × neck × operator × head values observed under the recipe.
    """
    used = included_runs(runs)
    rows = []
    for key, group in runs.groupby(list(ROW_KEYS), dropna=False, sort=False):
        seeds_run = used[_matches(used, key)]
        row = dict(zip(ROW_KEYS, key))
        row.update(_cell_state(group, seeds_run))
        for metric in FINAL_METRICS:
            values = seeds_run[metric].astype(float)
            row[f"{metric}_mean"] = values.mean() if len(values) else np.nan
            row[f"{metric}_std"] = values.std(ddof=1) if len(values) > 1 else np.nan
        rows.append(row)
    rows.extend(_missing_rows(runs))
    columns = [*ROW_KEYS, "recipe_diff", "status", "n_seeds", "seeds", "n_failed",
               "latency_device", "error"]
    columns += [f"{m}_{stat}" for m in FINAL_METRICS for stat in ("mean", "std")]
    variants = pd.DataFrame(rows, columns=columns)
    variants["img_size"] = variants["img_size"].astype("Int64")
    variants["recipe_diff"] = _recipe_diffs(runs, variants)
    return variants.sort_values([*VARIANT_KEYS, "recipe_diff"], kind="stable").reset_index(
        drop=True
    )


def _recipe_diffs(runs: pd.DataFrame, variants: pd.DataFrame) -> pd.Series:
    """Per variant, how its recipe differs from the other recipes of its context."""
    items = runs.drop_duplicates("recipe").set_index("recipe")["recipe_items"]
    diff = pd.Series("", index=variants.index, dtype=object)
    for _, group in variants.groupby(list(CONTEXT_KEYS), dropna=False):
        recipes = list(dict.fromkeys(group["recipe"]))
        labels = dict(zip(recipes, recipe_differences([items[r] for r in recipes])))
        diff[group.index] = group["recipe"].map(labels)
    return diff


def _matches(frame: pd.DataFrame, key: tuple) -> pd.Series:
    mask = pd.Series(True, index=frame.index)
    for column, value in zip(ROW_KEYS, key):
        mask &= frame[column].isna() if pd.isna(value) else frame[column] == value
    return mask


def _cell_state(group: pd.DataFrame, seeds_run: pd.DataFrame) -> dict:
    """Status, seed counts, device and error of one variant from all its runs."""
    done_seeds = set(seeds_run["seed"].dropna())
    failed = group[(group["status"] == "failed") & ~group["seed"].isin(done_seeds)]
    failed = failed.sort_values("start_time", kind="stable")
    if len(seeds_run):
        status = "completed"
    elif len(failed):
        status = "failed"
    else:
        status = "running"
    devices = sorted(set(seeds_run["latency_device"].dropna().astype(str)))
    errors = failed["error"].dropna().astype(str)
    return {
        "status": status,
        "n_seeds": len(seeds_run),
        "seeds": ",".join(str(s) for s in sorted(done_seeds)),
        "n_failed": int(failed["seed"].nunique(dropna=False)) if len(failed) else 0,
        "latency_device": ", ".join(devices),
        "error": errors.iloc[-1] if len(errors) else "",
    }


def _missing_rows(runs: pd.DataFrame) -> list[dict]:
    keys = list(ROW_KEYS)
    present = set(
        runs[keys].astype(object).where(runs[keys].notna(), None)
        .itertuples(index=False, name=None)
    )
    rows = []
    for recipe, group in runs.groupby("recipe", sort=False):
        context = tuple(None if pd.isna(v) else v for v in group[list(CONTEXT_KEYS)].iloc[0])
        for factors in _expected_cells(group):
            if (*factors, *context, recipe) not in present:
                row = dict(zip(ROW_KEYS, (*factors, *context, recipe)))
                row.update(status="missing", n_seeds=0, seeds="", n_failed=0)
                row.update(latency_device="", error="")
                rows.append(row)
    return rows


def _expected_cells(recipe_runs: pd.DataFrame) -> list[tuple]:
    """The backbone/neck/operator/head cells one recipe's runs should cover (`aggregate_variants`)."""
    requested = set().union(*recipe_runs["requested_cells"])
    if requested:
        return sorted(requested)
    return list(pd.MultiIndex.from_product([recipe_runs[f].dropna().unique() for f in FACTOR_KEYS]))


def add_deltas(variants: pd.DataFrame, baseline: Baseline) -> pd.DataFrame:
    """Adds is_baseline, delta_map50, delta_map50_95 (points), delta_params_pct,
    delta_gflops_pct and speedup against the baseline of the same recipe: NaN where that
    baseline did not complete."""
    out = variants.copy()
    out["is_baseline"] = _is_baseline(out, baseline)
    base = out[out["is_baseline"] & (out["status"] == "completed")].set_index("recipe")

    def of_baseline(column: str) -> np.ndarray:
        return base[column].reindex(out["recipe"]).to_numpy(dtype=float)

    for metric in ("map50", "map50_95"):
        out[f"delta_{metric}"] = (out[f"{metric}_mean"] - of_baseline(f"{metric}_mean")) * POINTS
    for metric in ("params", "gflops"):
        reference = of_baseline(f"{metric}_mean")
        out[f"delta_{metric}_pct"] = (out[f"{metric}_mean"] / reference - 1.0) * 100.0
    out["speedup"] = of_baseline("latency_ms_mean") / out["latency_ms_mean"]
    return out


def _is_baseline(variants: pd.DataFrame, baseline: Baseline) -> pd.Series:
    mask = pd.Series(True, index=variants.index)
    for factor, value in zip(FACTOR_KEYS, baseline):
        mask &= variants[factor] == value
    return mask


def add_comparisons(variants: pd.DataFrame, runs: pd.DataFrame, baseline: Baseline) -> pd.DataFrame:
    """Adds, per metric m in (map50_95, map50) and against the baseline of the same recipe
    over the included runs' seeds (stats.compare_seeds, in points): delta_m_ci_low,
    delta_m_ci_high, detectable_m, and for mAP50-95 `test`, `p_value`, `p_holm` (Holm
    over the comparisons of one recipe), `significant` and `verdict` (plain words);
    for mAP50 p_value_map50 and p_holm_map50. Needs add_deltas first."""
    out = variants.copy()
    used = included_runs(runs)
    per_seed = {
        key: dict(zip(_seed_keys(group), zip(group["map50_95"], group["map50"])))
        for key, group in used.groupby([*FACTOR_KEYS, "recipe"], sort=False)
    }
    for column in ("test", "verdict"):
        out[column] = ""
    for suffix in ("", "_map50"):
        out[f"p_value{suffix}"] = np.nan
        out[f"p_holm{suffix}"] = np.nan
    for metric in ("map50_95", "map50"):
        for part in ("ci_low", "ci_high"):
            out[f"delta_{metric}_{part}"] = np.nan
        out[f"detectable_{metric}"] = np.nan
    out["significant"] = False
    comparisons: dict[int, dict[str, stats.Comparison]] = {}
    for index, row in out.iterrows():
        if row["is_baseline"] or row["status"] != "completed":
            continue
        mine = per_seed.get((*(row[f] for f in FACTOR_KEYS), row["recipe"]), {})
        base = per_seed.get((*baseline, row["recipe"]), {})
        if not base:
            continue
        comparisons[index] = {
            metric: stats.compare_seeds(
                {s: v[i] * POINTS for s, v in mine.items()},
                {s: v[i] * POINTS for s, v in base.items()},
            )
            for i, metric in enumerate(("map50_95", "map50"))
        }
    for _, group in out.loc[list(comparisons)].groupby("recipe", sort=False):
        for metric, suffix in (("map50_95", ""), ("map50", "_map50")):
            family = [comparisons[i][metric] for i in group.index]
            adjusted = stats.holm([c.p_value for c in family])
            for index, c, p_holm in zip(group.index, family, adjusted):
                out.loc[index, f"delta_{metric}_ci_low"] = c.ci_low
                out.loc[index, f"delta_{metric}_ci_high"] = c.ci_high
                out.loc[index, f"detectable_{metric}"] = c.detectable
                out.loc[index, f"p_value{suffix}"] = c.p_value
                out.loc[index, f"p_holm{suffix}"] = p_holm
                if metric == "map50_95":
                    out.loc[index, "test"] = c.test
                    out.loc[index, "significant"] = stats.is_significant(c, p_holm)
                    out.loc[index, "verdict"] = stats.verdict(c, p_holm)
    return out


def add_speedups(variants: pd.DataFrame, runs: pd.DataFrame, baseline: Baseline) -> pd.DataFrame:
    """Per latency method the bench stage measured (`bench/<method>/...` columns of `runs`):

    - `latency_<method>_ms` with `_ci_low` / `_ci_high`: over the included runs (seeds) of
      the variant, the median of their medians, the interval the envelope of theirs (lowest
      low, highest high; one seed: its own);
    - `speedup_<method>` with `_low` / `_high`, `_verdict` and `_basis`, against the baseline
      of the same recipe: "paired rounds" when every run of both sides has its round medians
      from one bench run (same method tag, same number of rounds): per round, baseline /
      variant of the seeds' round medians (median over seeds), summarised by the median and
      the bootstrap CI over rounds (`bench.stage.bootstrap_median_ci`); else "intervals"
      (stats.speedup_interval on the variant latencies above)."""
    out = variants.copy()
    methods = bench_methods(runs.columns)
    if not methods:
        return out
    used = included_runs(runs)
    groups = {key: group for key, group in used.groupby([*FACTOR_KEYS, "recipe"], sort=False)}
    for method in methods:
        latency = {key: _bench_latency(group, method) for key, group in groups.items()}
        rounds = {key: _paired_rounds(group, method) for key, group in groups.items()}
        columns: dict[str, list] = {f"latency_{method}_ms{s}": [] for s in ("", "_ci_low", "_ci_high")}
        columns.update({f"speedup_{method}{s}": [] for s in ("", "_low", "_high", "_verdict", "_basis")})
        for _, row in out.iterrows():
            mine_key = (*(row[f] for f in FACTOR_KEYS), row["recipe"])
            base_key = (*baseline, row["recipe"])
            mine = latency.get(mine_key, (np.nan, np.nan, np.nan))
            for suffix, value in zip(("", "_ci_low", "_ci_high"), mine):
                columns[f"latency_{method}_ms{suffix}"].append(value)
            base = latency.get(base_key, (np.nan, np.nan, np.nan))
            speed, basis = None, ""
            if not (np.isnan(mine[0]) or np.isnan(base[0])):
                speed, basis = _bench_speedup(rounds.get(base_key), rounds.get(mine_key), base, mine)
            columns[f"speedup_{method}"].append(np.nan if speed is None else speed.ratio)
            columns[f"speedup_{method}_low"].append(np.nan if speed is None else speed.low)
            columns[f"speedup_{method}_high"].append(np.nan if speed is None else speed.high)
            columns[f"speedup_{method}_verdict"].append("" if speed is None else speed.words())
            columns[f"speedup_{method}_basis"].append(basis)
        for name, values in columns.items():
            out[name] = values
        sizes = {key: _method_img(group, method) for key, group in groups.items()}
        out[f"latency_{method}_img"] = pd.array(
            [sizes.get(key) for key in out[[*FACTOR_KEYS, "recipe"]].itertuples(index=False, name=None)],
            dtype="Int64",
        )
    return out


def _method_img(group: pd.DataFrame, method: str) -> int | None:
    """The image size the method measured the variant at (its tag's `img`), None if unknown."""
    column = f"bench/{method}/tag"
    for tag in (group[column].dropna() if column in group else []):
        try:
            return int(json.loads(tag)["img"])
        except (ValueError, KeyError, TypeError):
            continue
    return None


def _bench_latency(group: pd.DataFrame, method: str) -> tuple[float, float, float]:
    """(median of the seeds' medians, lowest CI low, highest CI high) of one variant."""
    median, low, high = (group[f"bench/{method}/{part}"].astype(float) for part in BENCH_PARTS)
    if median.notna().sum() == 0:
        return np.nan, np.nan, np.nan
    return float(median.median()), float(low.min()), float(high.max())


def _paired_rounds(group: pd.DataFrame, method: str) -> tuple[str, np.ndarray] | None:
    """(the method's tag, per-round median over the seeds' round medians) when every
    measured run of the variant has round medians of the same bench run, else None."""
    lists = group[f"bench/{method}/round_medians"] if f"bench/{method}/round_medians" in group else None
    measured = group[f"bench/{method}/median_ms"].notna()
    if lists is None or not measured.any():
        return None
    lists, tags = lists[measured], group.loc[measured, f"bench/{method}/tag"]
    if lists.isna().any() or tags.isna().any() or tags.nunique() != 1:
        return None
    if len({len(values) for values in lists}) != 1:
        return None
    return str(tags.iloc[0]), np.median(np.array(list(lists), dtype=float), axis=0)


def _bench_speedup(
    base_rounds: tuple[str, np.ndarray] | None, mine_rounds: tuple[str, np.ndarray] | None,
    base: tuple[float, float, float], mine: tuple[float, float, float],
) -> tuple[stats.SpeedUp, str]:
    """Paired per-round ratio when both sides come from one bench run, else the intervals."""
    if (base_rounds is not None and mine_rounds is not None and base_rounds[0] == mine_rounds[0]
            and len(base_rounds[1]) == len(mine_rounds[1])):
        return stats.paired_speedup(base_rounds[1], mine_rounds[1]), PAIRED
    return stats.speedup_interval(*base, *mine), INTERVALS


def _seed_keys(group: pd.DataFrame) -> list[int]:
    """Seeds as pairing keys; a run without a seed gets a negative key of its own."""
    return [int(s) if pd.notna(s) else -1 - i for i, s in enumerate(group["seed"])]


def add_pareto_flags(variants: pd.DataFrame, runs: pd.DataFrame | None = None) -> pd.DataFrame:
    """Adds pareto_gflops and pareto_latency (optimal by the point estimates) and
    pareto_gflops_status / pareto_latency_status (optimal / dominated / undecided, see
    stats.pareto_status), per context: (dataset, scale, img_size), plus latency_device for
    latency. The mAP interval is the 95 % t interval of the mean over the included runs'
    seeds (`runs`; without them, or with one seed, no interval: never "dominated");
    GFLOPs is exact; latency uses the t interval over seeds. Per bench method (add_speedups
    first): pareto_<method> and pareto_<method>_status on `latency_<method>_ms`, its
    interval the bench CI, per (dataset, scale, img_size) (the method fixes the device)."""
    out = variants.copy()
    intervals = _mean_intervals(runs, ("map50_95", "latency_ms"))
    for column in ("map50_95", "latency_ms"):
        for part in ("low", "high"):
            out[f"{column}_ci_{part}"] = [
                intervals.get((*key, column), (np.nan, np.nan))[part == "high"]
                for key in out[[*FACTOR_KEYS, "recipe"]].itertuples(index=False, name=None)
            ]
    for flag in ("pareto_gflops", "pareto_latency"):
        out[flag] = False
        out[f"{flag}_status"] = ""
    contexts = {"pareto_gflops": ["dataset", "scale", "img_size"],
                "pareto_latency": ["dataset", "scale", "img_size", "latency_device"]}
    for flag, context in contexts.items():
        cost = "gflops" if flag == "pareto_gflops" else "latency_ms"
        for _, group in out.groupby(context, dropna=False):
            score = group["map50_95_mean"].to_numpy(dtype=float)
            value = group[f"{cost}_mean"].to_numpy(dtype=float)
            out.loc[group.index, flag] = pareto_optimal(score, value)
            low = value if cost == "gflops" else group[f"{cost}_ci_low"].to_numpy(dtype=float)
            high = value if cost == "gflops" else group[f"{cost}_ci_high"].to_numpy(dtype=float)
            out.loc[group.index, f"{flag}_status"] = stats.pareto_status(
                score, group["map50_95_ci_low"].to_numpy(dtype=float),
                group["map50_95_ci_high"].to_numpy(dtype=float), value, low, high,
            )
    for method in bench_latency_methods(out):
        flag, cost = f"pareto_{method}", f"latency_{method}_ms"
        out[flag] = False
        out[f"{flag}_status"] = ""
        for _, group in out.groupby(["dataset", "scale", "img_size"], dropna=False):
            score = group["map50_95_mean"].to_numpy(dtype=float)
            value = group[cost].to_numpy(dtype=float)
            out.loc[group.index, flag] = pareto_optimal(score, value)
            out.loc[group.index, f"{flag}_status"] = stats.pareto_status(
                score, group["map50_95_ci_low"].to_numpy(dtype=float),
                group["map50_95_ci_high"].to_numpy(dtype=float), value,
                group[f"{cost}_ci_low"].to_numpy(dtype=float),
                group[f"{cost}_ci_high"].to_numpy(dtype=float),
            )
    return out


def bench_latency_methods(variants: pd.DataFrame) -> list[str]:
    """The bench methods with per-variant latency columns (`latency_<method>_ms`, from
    add_speedups), in column order."""
    return [c[len("latency_"):-len("_ms")] for c in variants.columns
            if c.startswith("latency_") and c.endswith("_ms") and c != "latency_ms"
            and f"speedup_{c[len('latency_'):-len('_ms')]}" in variants.columns]


def _mean_intervals(runs: pd.DataFrame | None, metrics: tuple[str, ...]) -> dict:
    """{(backbone, neck, operator, head, recipe, metric): (low, high)} over the included runs."""
    if runs is None or runs.empty:
        return {}
    intervals = {}
    for key, group in included_runs(runs).groupby([*FACTOR_KEYS, "recipe"], sort=False):
        for metric in metrics:
            intervals[(*key, metric)] = stats.mean_interval(group[metric].astype(float).tolist())
    return intervals


def one_factor_rows(variants: pd.DataFrame, factor: str, baseline: Baseline) -> pd.DataFrame:
    """The variants that differ from the baseline in `factor` only (the baseline included)."""
    mask = pd.Series(True, index=variants.index)
    for other, value in zip(FACTOR_KEYS, baseline):
        if other != factor:
            mask &= variants[other] == value
    return variants[mask]
