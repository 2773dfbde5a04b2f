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
from dataclasses import replace
from typing import NamedTuple

import numpy as np
import pandas as pd

from lightyolo.configs import DEFAULT_HEAD
from lightyolo.bench.stage import shared_state_interval
from lightyolo.report import power, sequential, stats
from lightyolo.report.sequential import SequentialDesign
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
# The smallest Δ mAP50-95 (points) worth knowing about: "equivalent" means the adjusted
# interval lies inside ±MARGIN; "seeds needed" is for detecting MARGIN (report option margin=).
MARGIN = 2.0
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


def add_comparisons(variants: pd.DataFrame, runs: pd.DataFrame, baseline: Baseline,
                    margin: float = MARGIN, design: SequentialDesign | None = None) -> pd.DataFrame:
    """Adds, per metric m in (map50_95, map50) and against the baseline of the same recipe
    over the included runs' seeds (stats.compare_seeds, in points): delta_m_ci_low,
    delta_m_ci_high (the test's own 95 % CI), delta_m_adj_low, delta_m_adj_high (the
    Holm-adjusted interval, stats.adjusted_interval), detectable_m (the smallest Δ found
    with 80 % power after Holm, power.py); for mAP50-95 `test`, `p_value`, `p_holm` (Holm
    over the comparisons of one recipe), `significant`, `decision` (stats.decide with
    ±`margin` points), `seeds_needed` (per side, to detect `margin` points) and `verdict`
    (plain words); for mAP50 p_value_map50 and p_holm_map50; `procedure`: what decided the
    row. With `design` (the runs came from adaptive seeds) the mAP50-95 decision, its
    interval and verdict are the sequential procedure's instead (sequential.replay over the
    paired seeds in seed order): a fixed-n test on adaptively collected seeds would not keep
    its error rate. Needs add_deltas first."""
    out = variants.copy()
    used = included_runs(runs)
    per_seed = {
        key: dict(zip(seed_keys(group), zip(group["map50_95"], group["map50"])))
        for key, group in used.groupby([*FACTOR_KEYS, "recipe"], sort=False)
    }
    for column in ("test", "verdict", "decision", "procedure"):
        out[column] = ""
    for suffix in ("", "_map50"):
        out[f"p_value{suffix}"] = np.nan
        out[f"p_holm{suffix}"] = np.nan
    for metric in ("map50_95", "map50"):
        for part in ("ci_low", "ci_high", "adj_low", "adj_high"):
            out[f"delta_{metric}_{part}"] = np.nan
        out[f"detectable_{metric}"] = np.nan
    out["seeds_needed"] = pd.array([pd.NA] * len(out), dtype="Int64")
    out["significant"] = False
    comparisons: dict[int, dict[str, tuple[stats.Comparison, float]]] = {}
    for index, row in out.iterrows():
        if row["is_baseline"] or row["status"] != "completed":
            continue
        mine = per_seed.get((*(row[f] for f in FACTOR_KEYS), row["recipe"]), {})
        base = per_seed.get((*baseline, row["recipe"]), {})
        if not base:
            continue
        comparisons[index] = {}
        for i, metric in enumerate(("map50_95", "map50")):
            x = {s: v[i] * POINTS for s, v in mine.items()}
            y = {s: v[i] * POINTS for s, v in base.items()}
            comparisons[index][metric] = (stats.compare_seeds(x, y),
                                          power.pooled_sd([list(x.values()), list(y.values())]))
    for _, group in out.loc[list(comparisons)].groupby("recipe", sort=False):
        for metric, suffix in (("map50_95", ""), ("map50", "_map50")):
            family = [comparisons[i][metric] for i in group.index]
            p_values = [c.p_value for c, _ in family]
            adjusted, multipliers = stats.holm(p_values), stats.holm_multipliers(p_values)
            size = max(1, int(np.sum(~np.isnan(p_values))))
            for index, (c, sd), p_holm, k in zip(group.index, family, adjusted, multipliers):
                paired = c.test == stats.PAIRED
                n_v, n_b = (c.n_pairs, c.n_pairs) if paired else (c.n_variant, c.n_baseline)
                detectable = power.detectable_effect(sd, n_v, n_b, paired=paired, family=size)
                low, high = stats.adjusted_interval(c, k)
                out.loc[index, f"delta_{metric}_ci_low"] = c.ci_low
                out.loc[index, f"delta_{metric}_ci_high"] = c.ci_high
                out.loc[index, f"delta_{metric}_adj_low"] = low
                out.loc[index, f"delta_{metric}_adj_high"] = high
                out.loc[index, f"detectable_{metric}"] = detectable
                out.loc[index, f"p_value{suffix}"] = c.p_value
                out.loc[index, f"p_holm{suffix}"] = p_holm
                if metric == "map50_95":
                    needed = power.seeds_needed(margin, sd, paired=paired, family=size)
                    shown = replace(c, detectable=detectable)
                    out.loc[index, "test"] = c.test
                    out.loc[index, "significant"] = stats.is_significant(c, p_holm)
                    out.loc[index, "decision"] = stats.decide(low, high, margin)
                    out.loc[index, "seeds_needed"] = pd.NA if needed is None else needed
                    out.loc[index, "verdict"] = stats.verdict(
                        shown, p_holm, multiplier=k, margin=margin, seeds_needed=needed)
                    out.loc[index, "procedure"] = f"{c.test}, {c.n_pairs or min(n_v, n_b)} seeds, Holm"
    if design is not None:
        for index in comparisons:
            _sequential_row(out, index, per_seed, baseline, design)
    return out


def _sequential_row(out: pd.DataFrame, index: int, per_seed: dict, baseline: Baseline,
                    design: SequentialDesign) -> None:
    """Replaces a row's mAP50-95 decision with the sequential procedure's."""
    row = out.loc[index]
    mine = per_seed.get((*(row[f] for f in FACTOR_KEYS), row["recipe"]), {})
    base = per_seed.get((*baseline, row["recipe"]), {})
    common = sorted(s for s in set(mine) & set(base) if isinstance(s, int))
    if len(common) < design.first:
        out.loc[index, ["decision", "significant"]] = [stats.UNKNOWN, False]
        out.loc[index, "procedure"] = f"sequential: fewer than {design.first} paired seeds"
        out.loc[index, "verdict"] = f"not decided: {len(common)} paired seed(s)"
        return
    decided = sequential.replay([(mine[s][0] - base[s][0]) * POINTS for s in common], design)
    # A fixed-n p-value on adaptively collected seeds does not keep its level: not shown.
    out.loc[index, ["p_value", "p_holm"]] = [np.nan, np.nan]
    out.loc[index, "delta_map50_95_adj_low"] = decided.low
    out.loc[index, "delta_map50_95_adj_high"] = decided.high
    out.loc[index, "decision"] = decided.decision
    out.loc[index, "significant"] = decided.decision in (stats.BETTER, stats.WORSE)
    extra = len(mine) - design.first
    out.loc[index, "procedure"] = (f"sequential, decided at look {decided.n - design.first + 1} "
                                   f"({decided.n} seeds; {extra} extra cell(s) trained)")
    words = {stats.BETTER: "better", stats.WORSE: "worse",
             stats.EQUIVALENT: f"no difference larger than ±{design.margin:g} pts",
             stats.UNDECIDED: f"undecided at {decided.n} seeds",
             stats.UNKNOWN: "no spread to test (identical differences)"}[decided.decision]
    out.loc[index, "verdict"] = f"{words}: {decided.words()} ({sequential.PROCEDURE})"


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
    """(median of the seeds' medians, lowest CI low, highest CI high) of one variant; a
    run's CI is recomputed from its round medians where it has them (bench.stage's
    shared-state interval), else the logged one."""
    median, low, high = (group[f"bench/{method}/{part}"].astype(float) for part in BENCH_PARTS)
    if median.notna().sum() == 0:
        return np.nan, np.nan, np.nan
    rounds = group.get(f"bench/{method}/round_medians")
    if rounds is not None:
        for index, values in rounds.items():
            if isinstance(values, list) and len(values) >= 2:
                low[index], high[index] = shared_state_interval(np.asarray(values, dtype=float))
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


def seed_keys(group: pd.DataFrame) -> list[object]:
    """Seeds as pairing keys; a run without a seed gets a key of its own (its run id), so
    that it never pairs with another variant's unseeded run."""
    return [int(s) if pd.notna(s) else f"unseeded:{run}" for s, run in zip(group["seed"], group["run_id"])]


def add_pareto_flags(variants: pd.DataFrame, runs: pd.DataFrame | None = None) -> pd.DataFrame:
    """Adds pareto_gflops and pareto_latency (optimal by the point estimates) and
    pareto_gflops_status / pareto_latency_status (optimal / dominated / undecided, see
    stats.pareto_status), per context: (dataset, scale, img_size), plus latency_device for
    latency. Whether one variant's mAP50-95 beats another's is the report's one rule
    (stats.pairwise_better: paired over seeds where they match, Holm over every pair of the
    context; without `runs` nothing is decided); GFLOPs is exact; the quick latency's
    interval is the 95 % t interval over seeds. Per bench method (add_speedups first):
    pareto_<method> and pareto_<method>_status on `latency_<method>_ms`, its interval the
    bench CI, per (dataset, scale, img_size) (the method fixes the device)."""
    out = variants.copy()
    intervals = _mean_intervals(runs, ("latency_ms",))
    for part in ("low", "high"):
        out[f"latency_ms_ci_{part}"] = [
            intervals.get((*key, "latency_ms"), (np.nan, np.nan))[part == "high"]
            for key in out[[*FACTOR_KEYS, "recipe"]].itertuples(index=False, name=None)
        ]
    better = _map_better(out, runs)
    for flag in ("pareto_gflops", "pareto_latency"):
        out[flag] = False
        out[f"{flag}_status"] = ""
    contexts = {"pareto_gflops": ["dataset", "scale", "img_size"],
                "pareto_latency": ["dataset", "scale", "img_size", "latency_device"]}
    costs = {"pareto_gflops": ("gflops_mean", None),
             "pareto_latency": ("latency_ms_mean", "latency_ms_ci")}
    costs.update({f"pareto_{m}": (f"latency_{m}_ms", f"latency_{m}_ms_ci")
                  for m in bench_latency_methods(out)})
    for flag, (cost, interval) in costs.items():
        out[flag] = False
        out[f"{flag}_status"] = ""
        for _, group in out.groupby(contexts.get(flag, contexts["pareto_gflops"]), dropna=False):
            score = group["map50_95_mean"].to_numpy(dtype=float)
            value = group[cost].to_numpy(dtype=float)
            low = value if interval is None else group[f"{interval}_low"].to_numpy(dtype=float)
            high = value if interval is None else group[f"{interval}_high"].to_numpy(dtype=float)
            out.loc[group.index, flag] = pareto_optimal(score, value)
            out.loc[group.index, f"{flag}_status"] = stats.pareto_status(
                score, value, low, high, better.loc[group.index, group.index].to_numpy())
    return out


def _map_better(variants: pd.DataFrame, runs: pd.DataFrame | None) -> pd.DataFrame:
    """[i, j] (variant indices): j's mAP50-95 beats i's by stats.pairwise_better, within
    each (dataset, scale, img_size) context; all False without runs."""
    better = pd.DataFrame(False, index=variants.index, columns=variants.index)
    if runs is None or runs.empty:
        return better
    used = included_runs(runs)
    per_seed = {key: dict(zip(seed_keys(group), group["map50_95"] * POINTS))
                for key, group in used.groupby([*FACTOR_KEYS, "recipe"], sort=False)}
    for _, group in variants.groupby(["dataset", "scale", "img_size"], dropna=False):
        keys = list(group[[*FACTOR_KEYS, "recipe"]].itertuples(index=False, name=None))
        values = [per_seed.get(key, {}) for key in keys]
        better.loc[group.index, group.index] = stats.pairwise_better(values)
    return better


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
