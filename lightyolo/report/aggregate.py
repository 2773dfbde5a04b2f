"""Per-run rows → per-variant rows: mean ± std over seeds, deltas to a baseline, Pareto flags.

The arithmetic behind the ablation tables that papers print by hand (e.g. the one-factor
tables of slim-neck, arXiv 2206.02424, and of GhostNet, arXiv 1911.11907):

- a variant is one (backbone, neck, operator, scale, img_size, dataset); its seeds are its
  completed runs, the newest one per seed; failed runs never enter a mean;
- std is the sample standard deviation over seeds (ddof=1), NaN for a single seed;
- deltas compare the means with the baseline (backbone, neck, operator) at the same scale,
  image size and dataset: mAP in points (×100 of the fractions MLflow holds), params and
  GFLOPs in %, speed-up as baseline latency / variant latency;
- a variant is Pareto-optimal when no other variant of its dataset has ≥ mAP50-95 and
  ≤ cost with at least one strict (cost = GFLOPs, or latency).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import pandas as pd

from lightyolo.report.collect import CONTEXT_KEYS, FACTOR_KEYS, FINAL_METRICS, VARIANT_KEYS

POINTS = 100.0  # mAP fractions → percentage points


class Baseline(NamedTuple):
    """The (backbone, neck, operator) every delta is measured against."""

    backbone: str
    neck: str
    operator: str

    @classmethod
    def parse(cls, text: str) -> "Baseline":
        parts = text.split("/")
        if len(parts) != 3 or not all(parts):
            raise ValueError(
                f"baseline={text!r}: expected backbone/neck/operator, e.g. c3/pan/conv"
            )
        return cls(*parts)

    def __str__(self) -> str:
        return "/".join(self)


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
    newest = seeded.drop_duplicates([*VARIANT_KEYS, "seed"], keep="last")
    return pd.concat([newest, completed[completed["seed"].isna()]]).sort_values(
        "start_time", kind="stable"
    )


def aggregate_variants(runs: pd.DataFrame) -> pd.DataFrame:
    """One row per variant of the grid (see module docstring) with columns VARIANT_KEYS,
    status (completed / failed / running / missing), n_seeds, seeds, n_failed,
    latency_device, error, then `<metric>_mean` and `<metric>_std` per final metric.

    Missing variants are the combinations of the observed backbone × neck × operator values,
    in each observed (scale, img_size, dataset), that have no run at all.
    """
    used = included_runs(runs)
    rows = []
    for key, group in runs.groupby(list(VARIANT_KEYS), dropna=False, sort=False):
        seeds_run = used[_matches(used, key)]
        row = dict(zip(VARIANT_KEYS, key))
        row.update(_cell_state(group, seeds_run))
        for metric in FINAL_METRICS:
            values = seeds_run[metric].astype(float)
            row[f"{metric}_mean"] = values.mean() if len(values) else np.nan
            row[f"{metric}_std"] = values.std(ddof=1) if len(values) > 1 else np.nan
        rows.append(row)
    rows.extend(_missing_rows(runs))
    columns = [*VARIANT_KEYS, "status", "n_seeds", "seeds", "n_failed", "latency_device", "error"]
    columns += [f"{m}_{stat}" for m in FINAL_METRICS for stat in ("mean", "std")]
    variants = pd.DataFrame(rows, columns=columns)
    variants["img_size"] = variants["img_size"].astype("Int64")
    return variants.sort_values(list(VARIANT_KEYS), kind="stable").reset_index(drop=True)


def _matches(frame: pd.DataFrame, key: tuple) -> pd.Series:
    mask = pd.Series(True, index=frame.index)
    for column, value in zip(VARIANT_KEYS, key):
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
    factor_values = [runs[f].dropna().unique() for f in FACTOR_KEYS]
    present = set(
        runs[list(VARIANT_KEYS)].astype(object).where(runs[list(VARIANT_KEYS)].notna(), None)
        .itertuples(index=False, name=None)
    )
    contexts = runs[list(CONTEXT_KEYS)].astype(object).drop_duplicates()
    rows = []
    for context in contexts.itertuples(index=False, name=None):
        context = tuple(None if pd.isna(v) else v for v in context)
        for factors in pd.MultiIndex.from_product(factor_values):
            if (*factors, *context) not in present:
                row = dict(zip(VARIANT_KEYS, (*factors, *context)))
                row.update(status="missing", n_seeds=0, seeds="", n_failed=0)
                row.update(latency_device="", error="")
                rows.append(row)
    return rows


def add_deltas(variants: pd.DataFrame, baseline: Baseline) -> pd.DataFrame:
    """Adds is_baseline, delta_map50_pts, delta_map50_95_pts, delta_params_pct,
    delta_gflops_pct, speedup and map50_95_beyond_spread (True/False where both the variant
    and its baseline have ≥ 2 seeds, else <NA>, also on the baseline itself): NaN where the
    baseline did not complete."""
    out = variants.copy()
    is_base = np.ones(len(out), dtype=bool)
    for factor, value in zip(FACTOR_KEYS, baseline):
        is_base &= (out[factor] == value).to_numpy()
    out["is_baseline"] = is_base
    base = out[is_base & (out["status"] == "completed")]
    base = base.set_index(list(CONTEXT_KEYS))
    context = pd.MultiIndex.from_frame(out[list(CONTEXT_KEYS)])

    def of_baseline(column: str) -> np.ndarray:
        return base[column].reindex(context).to_numpy(dtype=float)

    for metric in ("map50", "map50_95"):
        difference = out[f"{metric}_mean"] - of_baseline(f"{metric}_mean")
        out[f"delta_{metric}_pts"] = difference * POINTS
    for metric in ("params", "gflops"):
        reference = of_baseline(f"{metric}_mean")
        out[f"delta_{metric}_pct"] = (out[f"{metric}_mean"] / reference - 1.0) * 100.0
    out["speedup"] = of_baseline("latency_ms_mean") / out["latency_ms_mean"]
    spread = (out["map50_95_std"] + of_baseline("map50_95_std")) * POINTS
    beyond = pd.Series(pd.NA, index=out.index, dtype="boolean")
    known = spread.notna() & out["delta_map50_95_pts"].notna() & ~out["is_baseline"]
    beyond[known] = out.loc[known, "delta_map50_95_pts"].abs() > spread[known]
    out["map50_95_beyond_spread"] = beyond
    return out


def add_pareto_flags(variants: pd.DataFrame) -> pd.DataFrame:
    """Adds pareto_gflops and pareto_latency (mAP50-95 against each cost), per dataset."""
    out = variants.copy()
    out["pareto_gflops"] = False
    out["pareto_latency"] = False
    for _, group in out.groupby("dataset", dropna=False):
        score = group["map50_95_mean"].to_numpy(dtype=float)
        for flag, cost in (("pareto_gflops", "gflops_mean"), ("pareto_latency", "latency_ms_mean")):
            out.loc[group.index, flag] = pareto_optimal(score, group[cost].to_numpy(dtype=float))
    return out


def one_factor_rows(variants: pd.DataFrame, factor: str, baseline: Baseline) -> pd.DataFrame:
    """The variants that differ from the baseline in `factor` only (the baseline included)."""
    mask = pd.Series(True, index=variants.index)
    for other, value in zip(FACTOR_KEYS, baseline):
        if other != factor:
            mask &= variants[other] == value
    return variants[mask]
