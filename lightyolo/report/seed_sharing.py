"""How much of the seed effect architectures share: y(a, s) = μ_a + u_s + e(a, s).

Seed s fixes initialisation, data order and augmentation for every architecture, so u_s is
shared; e(a, s) is the architecture's own seed noise. On a balanced seed × architecture table
the two-way ANOVA without replication has E[MS_seed] = σ_e² + a·σ_u² and E[MS_resid] = σ_e²,
so F = MS_seed / MS_resid over (1 + a·θ) is F(s − 1, (s − 1)(a − 1))-distributed, θ = σ_u²/σ_e²:
an exact interval for θ, hence for the shared share ρ = θ / (1 + θ), the correlation of two
architectures' scores at one seed (docs/statistics.md).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import statsmodels.formula.api as smf
from scipy import stats as scipy_stats
from statsmodels.stats.anova import anova_lm


@dataclass(frozen=True)
class SeedSharing:
    architectures: int
    seeds: int
    f: float
    df_seed: int
    df_resid: int
    p_value: float  # H0: no shared seed effect
    shared_sd: float  # σ_u, points of the table's unit
    own_sd: float  # σ_e
    rho: float
    rho_low: float
    rho_high: float


def _share(theta: float) -> float:
    return theta / (1.0 + theta)


def seed_sharing(table: pd.DataFrame, level: float = 0.95) -> SeedSharing:
    """ρ with its exact interval from a seed (rows) × architecture (columns) table with no
    missing value; ValueError on a smaller table than 3 seeds × 2 architectures."""
    if table.isna().any().any() or table.shape[0] < 3 or table.shape[1] < 2:
        raise ValueError(f"need a complete table of ≥ 3 seeds × 2 architectures, got {table.shape}")
    long = table.rename_axis(index="seed", columns="arch").stack().rename("y").reset_index()
    anova = anova_lm(smf.ols("y ~ C(arch) + C(seed)", data=long).fit())
    n_seed, n_arch = table.shape
    ms_seed = anova.loc["C(seed)", "sum_sq"] / anova.loc["C(seed)", "df"]
    ms_resid = anova.loc["Residual", "sum_sq"] / anova.loc["Residual", "df"]
    f = ms_seed / ms_resid
    df_seed, df_resid = n_seed - 1, (n_seed - 1) * (n_arch - 1)
    tail = (1 - level) / 2
    f_lo, f_hi = scipy_stats.f.ppf([tail, 1 - tail], df_seed, df_resid)
    theta = max((f - 1) / n_arch, 0.0)
    theta_low, theta_high = (max((f / q - 1) / n_arch, 0.0) for q in (f_hi, f_lo))
    return SeedSharing(
        architectures=n_arch, seeds=n_seed, f=float(f), df_seed=df_seed, df_resid=df_resid,
        p_value=float(scipy_stats.f.sf(f, df_seed, df_resid)),
        shared_sd=float(np.sqrt(max((ms_seed - ms_resid) / n_arch, 0.0))), own_sd=float(np.sqrt(ms_resid)),
        rho=_share(theta), rho_low=_share(theta_low), rho_high=_share(theta_high),
    )
