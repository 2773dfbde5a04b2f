"""The machine-state noise model of a bench run, fitted on its round medians.

log(round median of cell c in round r) = μ_c + s_r + e_cr: s_r the machine's state in round
r, shared by every cell measured in it and drifting slowly (an AR(1) process), e_cr what is
left, independent. Fitted by moments: s_r is the mean over cells of the cell-centred logs,
e_cr the rest. The report states the fit beside each bench method (how much of a cell's
round-to-round spread the machine shared, and how slowly it moved), and the coverage tests
simulate bench runs from it (tests/test_bench_latency_ci.py).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class SharedState:
    shared_sd: float  # sd of s_r (log scale ≈ relative)
    lag1: float  # lag-1 autocorrelation of s_r over rounds
    cell_sd: float  # sd of e_cr
    cells: int
    rounds: int

    @property
    def shared_share(self) -> float:
        """The share of the round medians' variance the machine state explains."""
        return self.shared_sd**2 / (self.shared_sd**2 + self.cell_sd**2)

    def words(self) -> str:
        return (f"the machine state shared by the cells explains {self.shared_share:.0%} of "
                f"the round medians' variance, lag-1 autocorrelation {self.lag1:+.2f} over "
                f"rounds (fitted on {self.cells} cells × {self.rounds} rounds)")


def fit_shared_state(round_medians: np.ndarray) -> SharedState | None:
    """Fit on a (cells, rounds) array of round medians (ms) from one bench run; None with
    fewer than 2 cells or 3 rounds."""
    logs = np.log(np.asarray(round_medians, dtype=float))
    if logs.ndim != 2 or logs.shape[0] < 2 or logs.shape[1] < 3:
        return None
    centred = logs - logs.mean(axis=1, keepdims=True)
    state = centred.mean(axis=0)
    rest = centred - state
    lag1 = float(np.corrcoef(state[:-1], state[1:])[0, 1])
    return SharedState(float(state.std(ddof=1)), lag1, float(rest.std(ddof=1)), *logs.shape)
