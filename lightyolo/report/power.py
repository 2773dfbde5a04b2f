"""Power said honestly: the smallest effect a comparison can detect after Holm, and how many
seeds would detect a given Δ.

Both use the test the report runs (stats.compare_seeds: paired t over n common seeds, or
Welch's statistic with Hsu's df = min(n) − 1) at level α / m, m the family size of the
table: Bonferroni is Holm's first step, so the power of a comparison after Holm is at least
what is computed here and the figure is safe to read as "at least 80 %". The seed spread is
the pooled within-variant variance of the two sides (each variant's sample variance over its
seeds, pooled with their degrees of freedom), not the sd of a handful of differences; a
paired difference is given variance 2σ², i.e. no seed effect shared across architectures is
assumed to help (a shared one makes the real power higher).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from scipy import optimize, stats

from lightyolo.report.stats import ALPHA, POWER

MAX_SEEDS = 200  # seeds_needed gives up (returns None) beyond this


def pooled_sd(sides: Sequence[Sequence[float]]) -> float:
    """√ of the within-side variances pooled over sides with ≥ 2 values; NaN if none."""
    squares, df = 0.0, 0
    for values in sides:
        x = np.asarray([v for v in values if not math.isnan(v)], dtype=float)
        if len(x) >= 2:
            squares += float(((x - x.mean()) ** 2).sum())
            df += len(x) - 1
    return math.sqrt(squares / df) if df else math.nan


def t_power(ncp: float, df: float, alpha: float) -> float:
    """Power of a two-sided t test at level alpha for noncentrality ncp."""
    critical = stats.t.ppf(1 - alpha / 2, df)
    # The lower tail as sf at −ncp: nct.cdf is NaN far out in the tail (scipy 1.15).
    lower = np.nan_to_num(stats.nct.sf(critical, df, -ncp))
    return float(stats.nct.sf(critical, df, ncp) + lower)


def _design(sd: float, n_variant: int, n_baseline: int, paired: bool) -> tuple[float, float]:
    """(standard error of Δ, df) of the report's test at these seed counts."""
    if paired:
        n = min(n_variant, n_baseline)
        return sd * math.sqrt(2.0 / n), n - 1
    return sd * math.sqrt(1.0 / n_variant + 1.0 / n_baseline), min(n_variant, n_baseline) - 1


def power_at(delta: float, sd: float, n_variant: int, n_baseline: int, *, paired: bool,
             family: int) -> float:
    """Power to call a true Δ significant, at α / family."""
    se, df = _design(sd, n_variant, n_baseline, paired)
    return t_power(abs(delta) / se, df, ALPHA / max(family, 1))


def detectable_effect(sd: float, n_variant: int, n_baseline: int, *, paired: bool,
                      family: int) -> float:
    """The smallest |Δ| found with 80 % power at α / family; NaN when unknowable (sd NaN or
    fewer than 2 seeds on a side)."""
    if math.isnan(sd) or min(n_variant, n_baseline) < 2:
        return math.nan
    if sd == 0.0:
        return 0.0
    se, df = _design(sd, n_variant, n_baseline, paired)
    alpha = ALPHA / max(family, 1)
    high = 4.0
    while t_power(high, df, alpha) < POWER:  # widen the bracket (nct is NaN for huge ncp)
        high *= 2
    ncp = optimize.brentq(lambda x: t_power(x, df, alpha) - POWER, 1e-6, high)
    return float(ncp * se)


def seeds_needed(delta: float, sd: float, *, paired: bool, family: int) -> int | None:
    """The fewest seeds per side (the same on both) that detect a true |Δ| with 80 % power
    at α / family; None beyond MAX_SEEDS or when sd is unknown."""
    if math.isnan(sd) or delta == 0:
        return None
    if sd == 0.0:
        return 2
    for n in range(2, MAX_SEEDS + 1):
        if power_at(delta, sd, n, n, paired=paired, family=family) >= POWER:
            return n
    return None
