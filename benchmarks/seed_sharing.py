"""How much of the seed effect do architectures share? From the completed runs of a store.

    python benchmarks/seed_sharing.py --tracking-uri sqlite:///mlflow.db --experiment lightweight

Model y(a, s) = μ_a + u_s + e(a, s) (lightyolo/report/seed_sharing.py, docs/statistics.md):
on the seeds every listed architecture ran, the shared share ρ = σ_u²/(σ_u² + σ_e²) with its
exact 95 % interval from the two-way ANOVA. Also printed: each pair's Pearson r over the common seeds, and REML's estimate of σ_u² from
statsmodels' MixedLM on every run (unbalanced allowed) as a cross-check.
"""

from __future__ import annotations

import argparse
import itertools
import warnings

import numpy as np
import pandas as pd
import statsmodels.formula.api as smf
from scipy import stats as scipy_stats

from lightyolo.report.aggregate import POINTS, included_runs
from lightyolo.report.cells import variant_label
from lightyolo.report.collect import ReportError, read_runs
from lightyolo.report.seed_sharing import seed_sharing


def score_table(tracking_uri: str, experiment: str) -> pd.DataFrame:
    """seed × architecture table of test mAP50-95 in points (NaN where a seed is missing)."""
    try:
        runs = included_runs(read_runs(tracking_uri, experiment))
    except ReportError as err:
        raise SystemExit(f"seed_sharing: {err}") from None
    runs = runs[runs["seed"].notna()]
    arch = runs.apply(variant_label, axis=1)  # the report's own row names
    frame = pd.DataFrame({"arch": arch, "seed": runs["seed"].astype(int), "y": runs["map50_95"] * POINTS})
    return frame.pivot_table(index="seed", columns="arch", values="y")


def reml_seed_sd(table: pd.DataFrame) -> tuple[float, float]:
    """(σ_u, σ_e) by REML over every run, seeds missing for some architectures allowed."""
    long = table.rename_axis(index="seed", columns="arch").stack().rename("y").reset_index()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # boundary and convergence notes at few seeds
        fit = smf.mixedlm("y ~ C(arch)", long, groups=long["seed"]).fit(reml=True)
    return float(np.sqrt(max(fit.cov_re.iloc[0, 0], 0.0))), float(np.sqrt(fit.scale))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tracking-uri", required=True)
    parser.add_argument("--experiment", required=True)
    parser.add_argument("--min-seeds", type=int, default=4,
                        help="architectures with fewer common seeds are left out of the balanced table")
    args = parser.parse_args()
    table = score_table(args.tracking_uri, args.experiment)
    print("test mAP50-95 (points), seed × architecture:\n" + table.round(2).to_string() + "\n")
    keep = [a for a in table if table[a].notna().sum() >= args.min_seeds]
    balanced = table[keep].dropna()
    if balanced.shape[1] < 2 or balanced.shape[0] < 3:
        raise SystemExit(f"need ≥ 2 architectures sharing ≥ 3 seeds (with ≥ {args.min_seeds} seeds each); "
                         f"have {balanced.shape[1]} × {balanced.shape[0]}")
    result = seed_sharing(balanced)
    print(f"balanced table: {result.architectures} architectures × seeds {list(balanced.index)}")
    print(f"seed effect shared by the architectures: sd {result.shared_sd:.2f} pts; "
          f"each architecture's own seed noise: sd {result.own_sd:.2f} pts")
    print(f"F = {result.f:.2f} on ({result.df_seed}, {result.df_resid}) df, p = {result.p_value:.4f}")
    print(f"shared share ρ = σ_u²/(σ_u² + σ_e²) = {result.rho:.2f} "
          f"[{result.rho_low:.2f}, {result.rho_high:.2f}] (exact 95 % interval)")
    u, e = reml_seed_sd(table[keep])
    print(f"REML on every run of these architectures: σ_u {u:.2f}, σ_e {e:.2f} pts")
    print("\nPearson r of two architectures' scores over their common seeds:")
    for a, b in itertools.combinations(keep, 2):
        both = table[[a, b]].dropna()
        r = scipy_stats.pearsonr(both[a], both[b]).statistic if len(both) >= 3 else float("nan")
        print(f"  {a} vs {b}: r = {r:+.2f} over {len(both)} seeds")


if __name__ == "__main__":
    main()
