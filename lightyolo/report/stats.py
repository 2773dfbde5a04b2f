"""Comparisons that carry their uncertainty: Δ over seeds with a 95 % CI, p-values (Holm
within a table), the smallest effect the seeds could detect, speed-ups from latency
intervals, and Pareto domination that must exceed the uncertainty.

- Paired t over seeds (scipy.stats.ttest_rel) when both sides ran the same seeds ≥ 2 (the
  seed fixes init and data order, so seed s of the variant is paired with seed s of the
  baseline); Welch's t (ttest_ind(equal_var=False)) otherwise; one seed on either side:
  spread unknown, no interval.
- The smallest detectable effect is the |Δ| a two-sided t test at α = 0.05 finds with 80 %
  power at these seed counts, with the observed sd (statsmodels TTestPower / TTestIndPower
  solve for the standardised effect, times the sd).
- Holm's step-down adjustment over the comparisons of one table;
- "significant" only when the Holm-adjusted p < 0.05 (and so the CI excludes 0).

For the bench stage's latencies: speed-ups paired by round (bootstrap of the per-round
ratio) or from two intervals, and how well GFLOPs rank latency (Spearman's ρ).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from scipy import stats
from statsmodels.stats.power import TTestIndPower, TTestPower

from lightyolo.bench.stage import bootstrap_median_ci

ALPHA = 0.05
POWER = 0.80
CONFIDENCE = 0.95


@dataclass(frozen=True)
class Comparison:
    """variant − baseline over seeds, in the units of the values given (points for mAP)."""

    delta: float
    ci_low: float
    ci_high: float
    p_value: float
    test: str  # "paired t", "Welch t", or "" when the spread is unknown
    n_variant: int
    n_baseline: int
    detectable: float  # smallest |Δ| detectable at 80 % power; NaN when unknown

    @property
    def spread_known(self) -> bool:
        return self.test != ""


def compare_seeds(variant: Mapping[int, float], baseline: Mapping[int, float]) -> Comparison:
    """Δ = mean(variant) − mean(baseline) with its 95 % CI and p-value.

    `variant` and `baseline` map seed → value (a run without a seed may be given any key
    that no seed uses; it then never pairs).
    """
    v = {seed: float(x) for seed, x in variant.items() if not math.isnan(float(x))}
    b = {seed: float(x) for seed, x in baseline.items() if not math.isnan(float(x))}
    delta = float(np.mean(list(v.values())) - np.mean(list(b.values()))) if v and b else math.nan
    unknown = Comparison(delta, math.nan, math.nan, math.nan, "", len(v), len(b), math.nan)
    if len(v) < 2 or len(b) < 2:
        return unknown
    if set(v) == set(b):
        seeds = sorted(v)
        x, y = np.array([v[s] for s in seeds]), np.array([b[s] for s in seeds])
        sd = float(np.std(x - y, ddof=1))
        if _no_spread(sd, x, y):  # identical differences: no spread to test against
            return Comparison(delta, delta, delta, math.nan, "paired t", len(v), len(b), 0.0)
        result = stats.ttest_rel(x, y)
        interval = result.confidence_interval(CONFIDENCE)
        effect = _paired_effect(len(seeds))
        return Comparison(delta, float(interval.low), float(interval.high),
                          float(result.pvalue), "paired t", len(v), len(b), effect * sd)
    x, y = np.array(list(v.values())), np.array(list(b.values()))
    pooled = math.sqrt(((len(x) - 1) * x.var(ddof=1) + (len(y) - 1) * y.var(ddof=1))
                       / (len(x) + len(y) - 2))
    if _no_spread(pooled, x, y):
        return Comparison(delta, delta, delta, math.nan, "Welch t", len(v), len(b), 0.0)
    result = stats.ttest_ind(x, y, equal_var=False)
    interval = result.confidence_interval(CONFIDENCE)
    effect = _independent_effect(len(x), len(y))
    return Comparison(delta, float(interval.low), float(interval.high), float(result.pvalue),
                      "Welch t", len(v), len(b), effect * pooled)


def _no_spread(sd: float, x: np.ndarray, y: np.ndarray) -> bool:
    """sd zero up to float rounding of the values (0.28 − 0.30 vs 0.30 − 0.32)."""
    return sd <= 1e-9 * max(1.0, float(np.abs(x).max()), float(np.abs(y).max()))


@lru_cache(maxsize=None)
def _paired_effect(n: int) -> float:
    """Standardised effect (Δ / sd of the differences) a paired t finds at 80 % power."""
    return float(TTestPower().solve_power(nobs=n, alpha=ALPHA, power=POWER))


@lru_cache(maxsize=None)
def _independent_effect(n_variant: int, n_baseline: int) -> float:
    """Standardised effect (Δ / pooled sd) a two-sample t finds at 80 % power."""
    return float(TTestIndPower().solve_power(nobs1=n_variant, ratio=n_baseline / n_variant,
                                             alpha=ALPHA, power=POWER))


def holm(p_values: Sequence[float]) -> np.ndarray:
    """Holm-adjusted p-values of one family; NaN stays NaN and is not counted.

    Equal to statsmodels' multipletests(method="holm") (the tests check it), written out in
    numpy because that one calls gc.collect() on every call: 0.1-0.2 s each in a process
    holding torch and MLflow, which the simulation tests call thousands of times.
    """
    p = np.asarray(p_values, dtype=float)
    adjusted = np.full(p.shape, np.nan)
    known = np.flatnonzero(~np.isnan(p))
    order = known[np.argsort(p[known], kind="stable")]
    steps = np.arange(len(order), 0, -1)  # m, m-1, ..., 1
    adjusted[order] = np.minimum(np.maximum.accumulate(p[order] * steps), 1.0)
    return adjusted


def is_significant(comparison: Comparison, p_holm: float) -> bool:
    """Holm-adjusted p < 0.05 and the CI excludes 0."""
    if not comparison.spread_known or math.isnan(p_holm):
        return False
    excludes_zero = comparison.ci_low > 0 or comparison.ci_high < 0
    return bool(p_holm < ALPHA and excludes_zero)


def _interval(low: float, high: float, digits: int) -> str:
    return f"[{low:+.{digits}f}, {high:+.{digits}f}]"


def verdict(comparison: Comparison, p_holm: float, *, unit: str = "pts", digits: int = 1) -> str:
    """The comparison in plain words that follow from its CI and Holm-adjusted p."""
    c = comparison
    if math.isnan(c.delta):
        return "no completed baseline to compare with"
    if not c.spread_known:
        seeds = min(c.n_variant, c.n_baseline)
        return (f"spread unknown ({seeds} seed{'s' if seeds != 1 else ''} on one side): "
                f"Δ {c.delta:+.{digits}f} {unit} may be noise")
    if math.isnan(c.p_value):
        return (f"Δ {c.delta:+.{digits}f} {unit} identical on every seed (zero spread): "
                "no test possible")
    interval = _interval(c.ci_low, c.ci_high, digits)
    direction = "better" if c.delta > 0 else "worse"
    size = f"{abs(c.delta):.{digits}f} {unit} {interval}"
    if is_significant(c, p_holm):
        return f"{direction} by {size}"
    seeds = (f"{c.n_variant} seeds" if c.n_variant == c.n_baseline
             else f"{c.n_variant} vs {c.n_baseline} seeds")
    detectable = ("" if math.isnan(c.detectable)
                  else f"; these seeds detect ≥ {c.detectable:.{digits}f} {unit} at 80 % power")
    if c.ci_low > 0 or c.ci_high < 0:
        return (f"{direction} by {size} before correction, not significant after Holm "
                f"(p_holm {p_holm:.2f}){detectable}")
    return f"no difference detectable with {seeds}: {interval}{detectable}"


@dataclass(frozen=True)
class SpeedUp:
    """baseline latency / variant latency with a conservative interval."""

    ratio: float
    low: float
    high: float

    def words(self) -> str:
        if math.isnan(self.low):
            return f"{self.ratio:.2f}× (interval unknown)"
        text = f"{self.ratio:.2f}× [{self.low:.2f}, {self.high:.2f}]"
        if self.low > 1:
            return f"faster: {text}"
        if self.high < 1:
            return f"slower: {text}"
        return f"no speed difference shown: {text}"


def speedup_interval(
    baseline_ms: float, baseline_low_ms: float, baseline_high_ms: float,
    variant_ms: float, variant_low_ms: float, variant_high_ms: float,
) -> SpeedUp:
    """Speed-up = baseline median / variant median, from the bench stage's per-cell medians
    and 95 % intervals (`bench/<method>/median_ms`, `ci_low_ms`, `ci_high_ms`).

    The interval [baseline_low / variant_high, baseline_high / variant_low] holds whenever
    both latency intervals hold, so it covers with ≥ 90 % (Bonferroni) for two independent
    95 % intervals: conservative, not exact. NaN bounds in → NaN interval out.
    """
    ratio = baseline_ms / variant_ms
    bounds = (baseline_low_ms, baseline_high_ms, variant_low_ms, variant_high_ms)
    if any(math.isnan(x) for x in bounds) or variant_low_ms <= 0:
        return SpeedUp(ratio, math.nan, math.nan)
    return SpeedUp(ratio, baseline_low_ms / variant_high_ms, baseline_high_ms / variant_low_ms)


def paired_speedup(baseline_rounds: Sequence[float], variant_rounds: Sequence[float]) -> SpeedUp:
    """Speed-up from two cells measured in the same bench rounds: the per-round ratio
    baseline / variant, its median and 95 % percentile-bootstrap CI over rounds (the bench
    stage's own `bootstrap_median_ci`, seed 0). Pairing by round cancels what a round's
    machine state does to both cells, so this interval is sharper than speedup_interval's."""
    ratios = np.asarray(baseline_rounds, dtype=float) / np.asarray(variant_rounds, dtype=float)
    low, high = bootstrap_median_ci(ratios, seed=0)
    return SpeedUp(float(np.median(ratios)), low, high)


PERMUTATIONS = 9999  # permutation test of ρ: exact when n! ≤ this (n ≤ 7), else seeded resamples


@dataclass(frozen=True)
class RankCorrelation:
    """Spearman's ρ between GFLOPs and latency over n variants, with its two-sided p."""

    rho: float
    p_value: float
    n: int


def flops_rank_correlation(gflops: Sequence[float], latency_ms: Sequence[float]) -> RankCorrelation:
    """Spearman's ρ (scipy.stats.spearmanr) over the points where both are known, with a
    two-sided permutation p (scipy.stats.permutation_test over pairings: exact for n ≤ 7,
    else PERMUTATIONS seeded resamples), since spearmanr's t approximation says p = 0 for
    ρ = 1 at any n. NaN ρ and p with fewer than 3 points or a constant side."""
    x, y = np.asarray(gflops, dtype=float), np.asarray(latency_ms, dtype=float)
    known = ~(np.isnan(x) | np.isnan(y))
    x, y = x[known], y[known]
    if len(x) < 3 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return RankCorrelation(math.nan, math.nan, len(x))
    rho = float(stats.spearmanr(x, y).statistic)
    rank_x, rank_y = stats.rankdata(x), stats.rankdata(y)
    centred_y = rank_y - rank_y.mean()

    def rank_rho(ranks: np.ndarray, axis: int = -1) -> np.ndarray:
        centred = ranks - ranks.mean(axis=axis, keepdims=True)
        return (centred * centred_y).sum(axis=axis) / np.sqrt(
            (centred**2).sum(axis=axis) * (centred_y**2).sum())

    test = stats.permutation_test((rank_x,), rank_rho, permutation_type="pairings",
                                  vectorized=True, n_resamples=PERMUTATIONS,
                                  rng=np.random.default_rng(0))
    return RankCorrelation(rho, float(test.pvalue), len(x))


def fewer_flops_but_slower(
    gflops: Sequence[float], latency_ms: Sequence[float],
    latency_low: Sequence[float], latency_high: Sequence[float],
) -> list[tuple[int, int, bool]]:
    """Pairs (i, j) where i has fewer GFLOPs than j but a higher median latency, with
    whether i is slower beyond the uncertainty (i's latency CI lies above j's). NaN
    intervals never count as beyond."""
    g, m, low, high = (np.asarray(a, dtype=float) for a in (gflops, latency_ms, latency_low, latency_high))
    pairs = []
    for i in range(len(g)):
        for j in range(len(g)):
            if g[i] < g[j] and m[i] > m[j]:
                pairs.append((i, j, bool(low[i] > high[j])))
    return pairs


def mean_interval(values: Sequence[float]) -> tuple[float, float]:
    """95 % t interval of the mean of `values` (NaN, NaN for fewer than 2 values; the mean
    itself twice when they are all equal)."""
    x = np.asarray([v for v in values if not math.isnan(v)], dtype=float)
    if len(x) < 2:
        return math.nan, math.nan
    mean, sem = float(x.mean()), float(stats.sem(x))
    if sem == 0.0:
        return mean, mean
    low, high = stats.t.interval(CONFIDENCE, len(x) - 1, loc=mean, scale=sem)
    return float(low), float(high)


def pareto_status(
    score: np.ndarray, score_low: np.ndarray, score_high: np.ndarray,
    cost: np.ndarray, cost_low: np.ndarray, cost_high: np.ndarray,
) -> list[str]:
    """"optimal", "dominated" or "undecided" per point (higher score, lower cost is better).

    A point is dominated only when another point beats it beyond the uncertainty: that
    point's score interval lies at or above this one's (low ≥ high) and its cost interval at
    or below (high ≤ low), one of them strictly. A point dominated by the point estimates
    but not beyond the intervals is "undecided"; NaN intervals (one seed) never decide.
    Points with a NaN score or cost are "" (not placed).
    """
    arrays = [np.asarray(a, dtype=float) for a in (score, score_low, score_high, cost,
                                                   cost_low, cost_high)]
    score, score_low, score_high, cost, cost_low, cost_high = arrays
    valid = ~(np.isnan(score) | np.isnan(cost))
    status = []
    for i in range(len(score)):
        if not valid[i]:
            status.append("")
            continue
        others = valid & (np.arange(len(score)) != i)
        no_worse = others & (score >= score[i]) & (cost <= cost[i])
        strict = (score > score[i]) | (cost < cost[i])
        if not np.any(no_worse & strict):
            status.append("optimal")
            continue
        with np.errstate(invalid="ignore"):
            score_ge = score_low >= score_high[i]
            cost_le = cost_high <= cost_low[i]
            beyond = (score_low > score_high[i]) | (cost_high < cost_low[i])
        decided = others & score_ge & cost_le & beyond
        status.append("dominated" if np.any(decided) else "undecided")
    return status
