"""The shared share of the seed effect (lightyolo/report/seed_sharing.py): its exact interval
covers, and a table without a shared effect gives ρ near 0."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from lightyolo.report.seed_sharing import seed_sharing


def simulated_table(rng: np.random.Generator, rho: float, seeds: int = 6, archs: int = 4) -> pd.DataFrame:
    """y(a, s) = μ_a + u_s + e(a, s) with var(u) = ρ, var(e) = 1 − ρ (points)."""
    means = np.array([67.0, 66.5, 69.5, 68.7][:archs])
    shared = rng.normal(0, np.sqrt(rho), size=(seeds, 1))
    own = rng.normal(0, np.sqrt(1 - rho), size=(seeds, archs))
    return pd.DataFrame(means + shared + own, columns=[f"a{i}" for i in range(archs)])


@pytest.mark.parametrize("rho", [0.0, 0.5, 0.9])
def test_the_interval_of_the_shared_share_covers(rho: float) -> None:
    rng = np.random.default_rng(29)
    runs = 300
    covered = sum(r.rho_low <= rho <= r.rho_high
                  for r in (seed_sharing(simulated_table(rng, rho)) for _ in range(runs)))
    # exact 95 % interval (clipped at 0, which only widens it): ≥ 90 % with binomial slack
    assert covered / runs >= 0.90


def test_a_strong_shared_effect_is_found_and_none_is_not_invented() -> None:
    rng = np.random.default_rng(3)
    strong = seed_sharing(simulated_table(rng, 0.95, seeds=10))
    assert strong.p_value < 0.01 and strong.rho_low > 0.5
    variances = [seed_sharing(simulated_table(rng, 0.95, seeds=10)) for _ in range(100)]
    assert np.mean([r.shared_sd ** 2 for r in variances]) == pytest.approx(0.95, rel=0.15)  # unbiased
    assert np.mean([r.own_sd ** 2 for r in variances]) == pytest.approx(0.05, rel=0.15)
    none = [seed_sharing(simulated_table(rng, 0.0)).p_value for _ in range(200)]
    assert np.mean(np.array(none) < 0.05) <= 0.05 + 3 * np.sqrt(0.05 * 0.95 / 200)


def test_a_table_too_small_or_with_holes_is_refused() -> None:
    with pytest.raises(ValueError, match="≥ 3 seeds × 2 architectures"):
        seed_sharing(pd.DataFrame({"a": [1.0, 2.0], "b": [1.0, 2.5]}))
    with pytest.raises(ValueError, match="complete table"):
        seed_sharing(pd.DataFrame({"a": [1.0, 2.0, 3.0], "b": [1.0, np.nan, 2.0]}))
