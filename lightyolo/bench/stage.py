"""The interleaved measurement and its summary (median, p90, bootstrap CI of the median).

Protocol: R rounds; each round visits every subject (a (cell, runtime) pair) once, in an
order shuffled per round from one seeded generator; a visit is `warmup` untimed passes and
then `iters` timed ones (each pass synchronised by its runtime), timed by wall clock
(`time.perf_counter`, the default) or by the process's CPU time (`clock=cpu`,
`time.process_time`: on a shared machine other processes' load barely moves it; one
intra-op thread only, where CPU time is the pass's compute time). Every
subject thus sees the same spread of machine states, so slow phases of a shared machine
(other processes) land on all subjects alike instead of on whichever was measured then.

Summary of one subject (all in ms):

- `median_ms`: the median of the R round medians (a round median = the median of that
  visit's `iters` passes). The round is the independent unit: passes within a visit share
  the machine's state, so they are not independent draws. The median of round medians is
  what the bootstrap below resamples, so the point estimate and its interval agree, and a
  round hit by a burst of load moves it little.
- `p90_ms`: the 90th percentile of all R × iters timed passes (the tail of single passes).
- `ci_low_ms`, `ci_high_ms`: a 95 % interval of `median_ms` that respects the machine's
  state (`CI_METHOD`). Round medians share a machine state across cells that drifts slowly
  (fitted on the committed report: ~half their variance, lag-1 autocorrelation ~0.75), so
  rounds are not independent and a bootstrap that resamples them one by one covered
  62-72 %; and a bench run as a whole sits at an offset that no resampling of its own rounds
  can see (the README's repeat check: medians moved 1.7-4.6 % between runs). So: batch
  means over BATCHES consecutive blocks of rounds on the log scale (their spread carries the
  slow drift), a t interval with BATCHES − 1 df, its variance widened by RUN_OFFSET_SD² for
  the run-to-run offset. tests/test_bench_latency_ci.py checks ≥ 90 % coverage by
  simulation under the noise model fitted to the committed rounds, with and without offsets.

A ratio between two subjects (the A/A check, a speed-up) is taken per round, time of A /
time of B from the same round: the shared state cancels in it, so its rounds are close to
independent, and it keeps the percentile bootstrap over rounds (median and CI; 93-95 %
coverage under the same model).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Hashable, Mapping
from dataclasses import dataclass

import numpy as np
from scipy import stats

Pass = Callable[[], None]
# wall: elapsed time (what a user waits); cpu: this process's CPU time, which other processes
# on a shared machine barely move (meaningful for one intra-op thread on the CPU only).
CLOCKS: dict[str, Callable[[], float]] = {"wall": time.perf_counter, "cpu": time.process_time}
CONFIDENCE = 0.95
RESAMPLES = 2000
BATCHES = 4  # consecutive blocks of rounds whose means carry the slow machine-state drift
# sd (log scale ≈ relative) of a whole bench run's offset from the next one's: the README's
# repeat check moved the CPU-time medians by 1.7-4.6 % between two runs of the same cells.
RUN_OFFSET_SD = 0.03
CI_METHOD = (f"ci: 95% t interval of the log median over rounds from {BATCHES} batch means of "
             f"consecutive rounds (machine-state drift), widened by a {RUN_OFFSET_SD:.0%} "
             "run-to-run offset sd")


@dataclass(frozen=True)
class Summary:
    median_ms: float
    p90_ms: float
    ci_low_ms: float
    ci_high_ms: float
    rounds: int
    iters: int

    @property
    def half_width_pct(self) -> float:
        """Half the CI's width as % of the median."""
        return 50 * (self.ci_high_ms - self.ci_low_ms) / self.median_ms

    def metrics(self) -> dict[str, float]:
        return {
            "median_ms": self.median_ms,
            "p90_ms": self.p90_ms,
            "ci_low_ms": self.ci_low_ms,
            "ci_high_ms": self.ci_high_ms,
        }


def interleaved_timings(
    passes: Mapping[Hashable, Pass],
    *,
    rounds: int,
    warmup: int,
    iters: int,
    seed: int = 0,
    clock: str = "wall",
    on_round: Callable[[int], None] | None = None,
) -> dict[Hashable, np.ndarray]:
    """Time every pass as the module docstring says; {subject: (rounds, iters) ms array}."""
    if rounds < 2 or warmup < 0 or iters < 1:
        raise ValueError(f"bench: expected rounds >= 2, warmup >= 0, iters >= 1; got {rounds}, {warmup}, {iters}")
    if clock not in CLOCKS:
        raise ValueError(f"clock={clock!r}: expected one of {', '.join(CLOCKS)}")
    now = CLOCKS[clock]
    subjects = list(passes)
    times = {subject: np.empty((rounds, iters)) for subject in subjects}
    order = np.random.default_rng(seed)
    for round_index in range(rounds):
        for position in order.permutation(len(subjects)):
            subject = subjects[position]
            forward_pass = passes[subject]
            for _ in range(warmup):
                forward_pass()
            row = times[subject][round_index]
            for i in range(iters):
                start = now()
                forward_pass()
                row[i] = (now() - start) * 1000
        if on_round is not None:
            on_round(round_index)
    return times


def bootstrap_median_ci(values: np.ndarray, seed: int = 0) -> tuple[float, float]:
    """95 % percentile-bootstrap interval of the median of `values` (one per round)."""
    result = stats.bootstrap(
        (np.asarray(values, dtype=float),), np.median, confidence_level=CONFIDENCE,
        n_resamples=RESAMPLES, method="percentile", rng=np.random.default_rng(seed),
    )
    return float(result.confidence_interval.low), float(result.confidence_interval.high)


def summarise(times: np.ndarray, seed: int = 0) -> Summary:
    """Summary of one subject's (rounds, iters) timings (module docstring). `seed` is kept
    for callers; the interval is deterministic."""
    round_medians = np.median(times, axis=1)
    median = float(np.median(round_medians))
    low, high = shared_state_interval(round_medians)
    return Summary(
        median_ms=median,
        p90_ms=float(np.percentile(times, 90)),
        ci_low_ms=low,
        ci_high_ms=high,
        rounds=times.shape[0],
        iters=times.shape[1],
    )


def shared_state_interval(round_medians: np.ndarray, *, batches: int = BATCHES,
                          run_offset_sd: float = RUN_OFFSET_SD) -> tuple[float, float]:
    """95 % interval of the median of `round_medians` (in round order): log scale, centred
    on the log median, half-width t(0.975, b − 1) · √(sem² + run_offset_sd²) where sem is
    the standard error of the means of b consecutive batches of rounds (b = `batches`, or
    the number of rounds when there are fewer)."""
    logs = np.log(np.asarray(round_medians, dtype=float))
    b = min(batches, len(logs))
    means = np.array([part.mean() for part in np.array_split(logs, b)])
    sem = float(means.std(ddof=1) / np.sqrt(b))
    half = float(stats.t.ppf(0.5 + CONFIDENCE / 2, b - 1)) * np.hypot(sem, run_offset_sd)
    centre = float(np.log(np.median(np.asarray(round_medians, dtype=float))))
    return float(np.exp(centre - half)), float(np.exp(centre + half))


@dataclass(frozen=True)
class Ratio:
    """Per-round time(A) / time(B): > 1 means B is faster (B's speed-up over A)."""

    median: float
    ci_low: float
    ci_high: float

    def contains(self, value: float) -> bool:
        return self.ci_low <= value <= self.ci_high


def round_ratio(times_a: np.ndarray, times_b: np.ndarray, seed: int = 0) -> Ratio:
    """Median and bootstrap CI (over rounds) of the per-round ratio of round medians."""
    ratios = np.median(times_a, axis=1) / np.median(times_b, axis=1)
    low, high = bootstrap_median_ci(ratios, seed)
    return Ratio(float(np.median(ratios)), low, high)
