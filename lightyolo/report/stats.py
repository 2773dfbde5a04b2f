"""Comparisons that carry their uncertainty: Δ over seeds with a 95 % CI, p-values (Holm
within a table) with the interval Holm's own step uses, the smallest effect the seeds could
detect after that correction, speed-ups from latency intervals, and Pareto domination that
must exceed the uncertainty. docs/statistics.md argues each choice.

- Seeds matched (≥ 2 seeds run by both sides): paired t over the common seeds
  (scipy.stats.ttest_rel). Seed s fixes init and data order for every architecture, so a
  seed effect shared across architectures (a random seed intercept) cancels in the
  difference; the paired t is exact under that mixed model whatever the two sides' spreads,
  and when nothing is shared it only loses degrees of freedom. Seeds run by one side only
  are left out of the pairing.
- Otherwise (fewer than 2 common seeds; runs without a seed never pair): Welch's statistic
  with Hsu's conservative df = min(n_variant, n_baseline) − 1, whose level is ≤ α at every
  ratio of the two spreads (Welch's estimated df is liberal at 3 seeds with unequal ones).
- One seed on either side: spread unknown, no interval.
- Holm's step-down adjustment over the comparisons of one table; a comparison's adjusted
  interval is its t interval at level 1 − α / k, k its Holm multiplier (`holm_multipliers`),
  so "the adjusted interval excludes 0" and "Holm-adjusted p < α" are one statement, and
  `decide` is the one rule every table, Pareto flag and plot uses.
- Power after the correction: power.py.

For the bench stage's latencies: speed-ups paired by round (bootstrap of the per-round
ratio) or from two intervals, and how well GFLOPs rank latency (Spearman's ρ).
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats

from lightyolo.bench.stage import bootstrap_median_ci

ALPHA = 0.05
POWER = 0.80
CONFIDENCE = 0.95
PAIRED = "paired t"
UNPAIRED = "unpaired t (Welch, Hsu df)"
# Decisions (`decide`): the only words a table, a Pareto flag or a plot uses for a Δ.
BETTER, WORSE, EQUIVALENT, UNDECIDED, UNKNOWN = "better", "worse", "equivalent", "undecided", "unknown"


@dataclass(frozen=True)
class Comparison:
    """variant − baseline over seeds, in the units of the values given (points for mAP)."""

    delta: float
    ci_low: float
    ci_high: float
    p_value: float
    test: str  # PAIRED, UNPAIRED, or "" when the spread is unknown
    n_variant: int
    n_baseline: int
    detectable: float  # smallest |Δ| detectable at 80 % power; NaN when unknown
    se: float = math.nan  # standard error of delta
    df: float = math.nan  # degrees of freedom of the t reference
    n_pairs: int = 0  # seeds used in the pairing (paired t only)

    @property
    def spread_known(self) -> bool:
        return self.test != ""


def compare_seeds(variant: Mapping[Hashable, float], baseline: Mapping[Hashable, float]) -> Comparison:
    """Δ = mean(variant) − mean(baseline) with its 95 % CI and p-value (module docstring).

    `variant` and `baseline` map seed → value; a run without a seed must be given a key
    that nothing else uses (aggregate.seed_keys), so that it never pairs.
    """
    v = {seed: float(x) for seed, x in variant.items() if not math.isnan(float(x))}
    b = {seed: float(x) for seed, x in baseline.items() if not math.isnan(float(x))}
    common = sorted(set(v) & set(b), key=str)
    if len(common) >= 2:
        x, y = np.array([v[s] for s in common]), np.array([b[s] for s in common])
        delta = float(x.mean() - y.mean())
        d = x - y
        sd = float(np.std(d, ddof=1))
        n = len(common)
        if _no_spread(sd, x, y):  # identical differences: no spread to test against
            return Comparison(delta, delta, delta, math.nan, PAIRED, len(v), len(b), 0.0,
                              0.0, n - 1, n)
        result = stats.ttest_rel(x, y)
        interval = result.confidence_interval(CONFIDENCE)
        return Comparison(delta, float(interval.low), float(interval.high),
                          float(result.pvalue), PAIRED, len(v), len(b), math.nan,
                          sd / math.sqrt(n), n - 1, n)
    delta = float(np.mean(list(v.values())) - np.mean(list(b.values()))) if v and b else math.nan
    if len(v) < 2 or len(b) < 2:
        return Comparison(delta, math.nan, math.nan, math.nan, "", len(v), len(b), math.nan)
    x, y = np.array(list(v.values())), np.array(list(b.values()))
    se = math.sqrt(x.var(ddof=1) / len(x) + y.var(ddof=1) / len(y))
    df = min(len(x), len(y)) - 1
    if _no_spread(se, x, y):
        return Comparison(delta, delta, delta, math.nan, UNPAIRED, len(v), len(b), 0.0, 0.0, df)
    half = float(stats.t.ppf(1 - (1 - CONFIDENCE) / 2, df)) * se
    p = float(2 * stats.t.sf(abs(delta) / se, df))
    return Comparison(delta, delta - half, delta + half, p, UNPAIRED, len(v), len(b), math.nan,
                      se, df)


def _no_spread(sd: float, x: np.ndarray, y: np.ndarray) -> bool:
    """sd zero up to float rounding of the values (0.28 − 0.30 vs 0.30 − 0.32)."""
    return sd <= 1e-9 * max(1.0, float(np.abs(x).max()), float(np.abs(y).max()))


def holm(p_values: Sequence[float]) -> np.ndarray:
    """Holm-adjusted p-values of one family; NaN stays NaN and is not counted.

    Equal to statsmodels' multipletests(method="holm") (the tests check it), written out in
    numpy because that one calls gc.collect() on every call: 0.1-0.2 s each in a process
    holding torch and MLflow, which the simulation tests call thousands of times.
    """
    p = np.asarray(p_values, dtype=float)
    return np.minimum(p * holm_multipliers(p), 1.0)


def holm_multipliers(p_values: Sequence[float]) -> np.ndarray:
    """k per p-value such that Holm's adjusted p = min(1, k · p): the multiplier of the
    step that decides it (between 1 and the family size); NaN for NaN."""
    p = np.asarray(p_values, dtype=float)
    multipliers = np.full(p.shape, np.nan)
    known = np.flatnonzero(~np.isnan(p))
    order = known[np.argsort(p[known], kind="stable")]
    steps = np.arange(len(order), 0, -1, dtype=float)  # m, m-1, ..., 1
    uncapped = np.maximum.accumulate(p[order] * steps)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = uncapped / p[order]
    multipliers[order] = np.where(p[order] > 0, ratio, steps)
    return multipliers


def is_significant(comparison: Comparison, p_holm: float) -> bool:
    """Holm-adjusted p < 0.05 and the CI excludes 0."""
    if not comparison.spread_known or math.isnan(p_holm):
        return False
    excludes_zero = comparison.ci_low > 0 or comparison.ci_high < 0
    return bool(p_holm < ALPHA and excludes_zero)


def adjusted_interval(comparison: Comparison, multiplier: float) -> tuple[float, float]:
    """The t interval at level 1 − α / multiplier (Holm's step for this comparison):
    it excludes 0 exactly when the Holm-adjusted p < α. NaN when the spread is unknown."""
    c = comparison
    if not c.spread_known or math.isnan(multiplier) or math.isnan(c.se):
        return math.nan, math.nan
    if c.se == 0.0:
        return c.delta, c.delta
    half = float(stats.t.ppf(1 - ALPHA / multiplier / 2, c.df)) * c.se
    return c.delta - half, c.delta + half


def decide(low: float, high: float, margin: float) -> str:
    """The one rule (tables, Pareto, plots), from an adjusted interval of Δ:
    better / worse when it excludes 0; equivalent when it lies inside ±margin (a measured
    "no difference larger than margin"); undecided otherwise (more seeds needed); unknown
    without an interval."""
    if math.isnan(low) or math.isnan(high):
        return UNKNOWN
    if low > 0:
        return BETTER
    if high < 0:
        return WORSE
    if -margin < low and high < margin:
        return EQUIVALENT
    return UNDECIDED


def _interval(low: float, high: float, digits: int) -> str:
    return f"[{low:+.{digits}f}, {high:+.{digits}f}]"


def verdict(comparison: Comparison, p_holm: float, *, multiplier: float | None = None,
            margin: float = math.nan, seeds_needed: int | None = None,
            unit: str = "pts", digits: int = 1) -> str:
    """The comparison in plain words that follow from its Holm-adjusted interval: direction
    only when it is significant after Holm; "equivalent" only when the adjusted interval
    lies inside ±margin; otherwise undecided, with what more seeds would buy.
    `multiplier` defaults to p_holm / p (Holm's step for this comparison)."""
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
    if multiplier is None:
        multiplier = 1.0 if math.isnan(p_holm) or c.p_value == 0 else max(1.0, p_holm / c.p_value)
    low, high = adjusted_interval(c, multiplier)
    interval = _interval(low, high, digits)
    decision = decide(low, high, margin)
    if decision in (BETTER, WORSE) and is_significant(c, p_holm):
        return f"{decision} by {abs(c.delta):.{digits}f} {unit} {interval} (Holm-adjusted)"
    seeds = (f"{c.n_variant} seeds" if c.n_variant == c.n_baseline
             else f"{c.n_variant} vs {c.n_baseline} seeds")
    if decision == EQUIVALENT:
        return (f"no difference larger than ±{margin:.{digits}f} {unit}: Δ {c.delta:+.{digits}f} "
                f"{interval} (Holm-adjusted, {seeds})")
    detectable = ("" if math.isnan(c.detectable)
                  else f"; these seeds detect ≥ {c.detectable:.{digits}f} {unit} at 80 % power "
                       "after Holm")
    needed = ""
    if seeds_needed is not None and not math.isnan(margin):
        needed = f"; ≈ {seeds_needed} seeds per side would detect {margin:.{digits}f} {unit}"
    return (f"undecided with {seeds} (not enough seeds): Δ {c.delta:+.{digits}f} {interval} "
            f"(Holm-adjusted), not significant after Holm (p_holm {p_holm:.2f}){detectable}"
            f"{needed}")


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
    score: np.ndarray, cost: np.ndarray, cost_low: np.ndarray, cost_high: np.ndarray,
    score_better: np.ndarray,
) -> list[str]:
    """"optimal", "dominated" or "undecided" per point (higher score, lower cost is better).

    `score_better[i, j]` says that point j's score is better than point i's by the report's
    one rule (`decide` on the Holm-adjusted interval of their pairwise comparison). A point
    is dominated only when another point is better by that rule and costs no more beyond
    the uncertainty (its cost interval's high ≤ this one's low; an exact cost: ≤). A point
    beaten by the point estimates only is "undecided"; "optimal" means that no point beats it
    even by the point estimates. Points with a NaN score or cost are "" (not placed).
    """
    score, cost, cost_low, cost_high = (np.asarray(a, dtype=float)
                                        for a in (score, cost, cost_low, cost_high))
    better = np.asarray(score_better, dtype=bool)
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
            cheaper = cost_high <= cost_low[i]
        status.append("dominated" if np.any(others & better[i] & cheaper) else "undecided")
    return status


def pairwise_better(values: Sequence[Mapping[Hashable, float]]) -> np.ndarray:
    """[i, j] True where variant j's score beats variant i's by the one rule: compare_seeds
    of every pair, Holm over all pairs of the family, the adjusted interval excluding 0."""
    k = len(values)
    pairs = [(i, j) for i in range(k) for j in range(i + 1, k)]
    family = [compare_seeds(values[j], values[i]) for i, j in pairs]
    p_values = [c.p_value for c in family]
    better = np.zeros((k, k), dtype=bool)
    for (i, j), c, p_holm in zip(pairs, family, holm(p_values)):
        if is_significant(c, p_holm):
            better[i, j], better[j, i] = c.delta > 0, c.delta < 0
    return better
