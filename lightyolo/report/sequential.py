"""Adaptive seeds: a group-sequential paired t test per comparison with the baseline, so
that looking after every added seed does not inflate false positives.

Every cell starts with `first` seeds; after each further seed a comparison is looked at: the
paired t over the seeds both sides ran (as stats.compare_seeds pairs them), its interval at
one nominal level α' for every look (Pocock's boundary). α' is set so that the chance of
any look's interval missing the true Δ is α / family: under normal seed noise the t
statistics of the looks have a joint law that does not depend on the seed sd, so α' is
found once per design by simulating that law (CALIBRATION_DRAWS seeded draws, bisection).
The comparison stops when its interval

- excludes 0: better / worse;
- lies inside ±margin: equivalent (a measured "no difference larger than margin");
- neither at `cap` seeds: undecided at the cap.

Each stopping claim is wrong only if some look's interval missed the true Δ, so every
claim's error rate is ≤ α / family per comparison and ≤ α over the table (Bonferroni over
the comparisons). A union bound over the looks (α / looks each) would also be valid, but at
3-8 seeds it wastes most of α: the looks share their seeds. tests/test_report_sequential.py
checks the false-positive rate by simulation and prints the cells it spends.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from scipy import optimize, stats

from lightyolo.report.stats import ALPHA, UNDECIDED, UNKNOWN, decide

PROCEDURE = "group-sequential paired t (Pocock boundary)"
CALIBRATION_DRAWS = 100_000


@dataclass(frozen=True)
class SequentialDesign:
    """How many seeds, and at which level each look is taken."""

    first: int = 3  # seeds every cell starts with (≥ 2: a paired t needs a spread)
    cap: int = 8  # most seeds per cell
    margin: float = 2.0  # points: "equivalent" means the interval lies inside ±margin
    family: int = 1  # comparisons that share α (Bonferroni over the table)
    alpha: float = ALPHA

    def __post_init__(self) -> None:
        if not 2 <= self.first <= self.cap:
            raise ValueError(f"seeds: expected 2 <= first <= cap, got first={self.first}, cap={self.cap}")
        if self.family < 1 or self.margin <= 0:
            raise ValueError(f"expected family >= 1 and margin > 0, got {self.family}, {self.margin}")

    @property
    def looks(self) -> list[int]:
        """The seed counts at which a comparison is looked at."""
        return list(range(self.first, self.cap + 1))

    def level(self, n: int) -> float:
        """α' of a look (the same at every look: Pocock)."""
        return pocock_level(self.first, self.cap, self.alpha / self.family)

    def describe(self) -> str:
        return (f"{PROCEDURE}: looks at {self.first}..{self.cap} seeds, each at level "
                f"{self.level(self.first):.4f} (α {self.alpha:g} over {self.family} "
                f"comparison(s) across all looks), equivalent within ±{self.margin:g} pts")


@lru_cache(maxsize=None)
def pocock_level(first: int, cap: int, alpha: float) -> float:
    """The nominal two-sided level α' of every look at first..cap seeds such that the chance
    that any look's |t| (centred on the true Δ) exceeds its t(1 − α'/2, n − 1) is alpha, by
    simulation of normal differences (seeded; the t statistics do not depend on the sd)."""
    if first == cap:
        return alpha
    z = np.random.default_rng(0).standard_normal((CALIBRATION_DRAWS, cap))
    n = np.arange(1, cap + 1)
    total, squares = np.cumsum(z, axis=1), np.cumsum(z**2, axis=1)
    mean = total / n
    with np.errstate(divide="ignore", invalid="ignore"):
        t = np.abs(mean / np.sqrt((squares - n * mean**2) / np.maximum(n - 1, 1) / n))
    t = t[:, first - 1:]
    df = np.arange(first, cap + 1) - 1

    def excess(level: float) -> float:
        return float(np.mean((t > stats.t.ppf(1 - level / 2, df)).any(axis=1))) - alpha

    return float(optimize.brentq(excess, alpha / (cap - first + 1) / 10, alpha, xtol=1e-7))


@dataclass(frozen=True)
class Look:
    """One look at a comparison."""

    n: int  # pairs (seeds both sides ran)
    delta: float
    low: float
    high: float
    level: float  # α of this look
    decision: str  # BETTER / WORSE / EQUIVALENT / UNDECIDED

    @property
    def stops(self) -> bool:
        return self.decision not in (UNDECIDED, UNKNOWN)

    def words(self, unit: str = "pts") -> str:
        return (f"Δ {self.delta:+.2f} {unit} [{self.low:+.2f}, {self.high:+.2f}] at "
                f"{self.n} seeds (look level α = {self.level:.4f})")


def look(differences: Sequence[float], design: SequentialDesign) -> Look:
    """The look at the paired differences (variant − baseline) of the first n seeds."""
    d = np.asarray(differences, dtype=float)
    if len(d) < 2:
        raise ValueError(f"a look needs ≥ 2 paired seeds, got {len(d)}")
    delta, low, high, level = _intervals(d[None, :], design)
    decision = decide(float(low[0]), float(high[0]), design.margin)
    return Look(len(d), float(delta[0]), float(low[0]), float(high[0]), level, decision)


def _intervals(d: np.ndarray, design: SequentialDesign) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    """(Δ, low, high) per row of d (rows × n seeds) at the look level of n seeds, and it."""
    n = d.shape[1]
    level = design.level(n)
    delta = d.mean(axis=1)
    sd = d.std(axis=1, ddof=1)
    # zero spread (identical differences): no interval, so no claim; more seeds bring spread
    sd = np.where(sd > 0, sd, np.nan)
    half = float(stats.t.ppf(1 - level / 2, n - 1)) * sd / math.sqrt(n)
    return delta, delta - half, delta + half, level


def replay(differences: Sequence[float], design: SequentialDesign) -> Look:
    """The look that decided a comparison whose seeds' differences are given in seed order:
    the first look that stops, else the last one (UNDECIDED at the cap, or still running
    when fewer seeds than the cap are in)."""
    d = np.asarray(list(differences)[: design.cap], dtype=float)
    if len(d) < design.first:
        raise ValueError(f"fewer than {design.first} paired seeds: nothing to look at")
    decisions, stopped_at = replay_many(d[None, :], design)
    return look(d[: int(stopped_at[0])], design)


def replay_many(differences: np.ndarray, design: SequentialDesign) -> tuple[np.ndarray, np.ndarray]:
    """`replay` for many comparisons at once (rows × seeds in seed order, as many seeds as
    each row has looks for): (decision, seeds at the deciding look) per row."""
    d = np.asarray(differences, dtype=float)[:, : design.cap]
    decisions = np.full(len(d), UNDECIDED, dtype=object)
    stopped_at = np.zeros(len(d), dtype=int)
    open_rows = np.ones(len(d), dtype=bool)
    for n in design.looks:
        if n > d.shape[1]:
            break
        _, low, high, _ = _intervals(d[:, :n], design)
        now = np.array([decide(lo, hi, design.margin) for lo, hi in zip(low, high)], dtype=object)
        stopping = open_rows & (now != UNDECIDED) & (now != UNKNOWN)
        decisions[stopping] = now[stopping]
        stopped_at[open_rows] = n
        open_rows &= ~stopping
    return decisions, stopped_at
