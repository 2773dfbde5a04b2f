"""Factor effects of a complete grid: the full factorial model, main effects with CIs,
every interaction the design supports.

On the runs of one recipe (every combination of the swept factors present, ≥ 2 seeds
each), one linear model with every interaction the grid supports (the three-way one on
backbone × neck × operator), fitted by least squares; its residual is the one error term
of everything below:

- a main effect is the difference of one level's mean from the reference level's, each
  averaged over the other factors' levels (a contrast of the cell means, so an unbalanced
  seed count does not tilt it), with its 95 % CI and p (statsmodels OLS `y ~ 0 + C(cell)`,
  whose residual is the full model's), and the words use its Holm-adjusted interval (the
  report's one rule, stats.adjusted_interval);
- interactions: type III F tests with sum-to-zero coding (patsy `C(f, Sum)`): each term is
  tested after every other, which is what an unbalanced grid needs (type II assumes the
  higher-order terms away); equal to statsmodels' anova_lm(typ=3) on that model (the tests
  check it), computed here in numpy so that one design serves many responses at once (the
  simulation tests fit hundreds of grids in one call); a significant one is spelled out as
  the effect of its first factor at each level (combination) of the others;
- p-values are Holm-adjusted within the main effects and within the interactions of a grid,
  and the words follow the adjusted ones;
- an incomplete grid: the largest complete sub-grid (`largest_complete_subgrid`) is
  analysed instead, and named.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

import numpy as np
import pandas as pd
import patsy
import statsmodels.formula.api as smf
from scipy import stats as scipy_stats

from lightyolo.report.stats import holm, holm_multipliers

ALPHA = 0.05
MIN_SEEDS = 2


@dataclass(frozen=True)
class MainEffect:
    factor: str
    level: str
    reference: str
    effect: float
    ci_low: float
    ci_high: float
    p_value: float
    p_holm: float = float("nan")  # Holm-adjusted over the main effects of the grid
    se: float = float("nan")
    # the interval at Holm's level for this effect (stats.adjusted_interval's rule): it
    # excludes 0 exactly when p_holm < 0.05
    adj_low: float = float("nan")
    adj_high: float = float("nan")


@dataclass(frozen=True)
class Interaction:
    factors: tuple[str, ...]  # two or three
    f_value: float
    p_value: float
    p_holm: float = float("nan")  # Holm-adjusted over the interactions of the grid
    df: int = 0  # numerator degrees of freedom
    reference: str = ""  # the level of factors[0] the simple effects are measured from
    # effect of factors[0]'s levels vs its reference at each level (combination, joined by
    # "/") of the other factors: (estimate, 95 % CI low, high)
    simple_effects: dict[str, dict[str, float]] = field(default_factory=dict)
    simple_intervals: dict[str, dict[str, tuple[float, float]]] = field(default_factory=dict)


@dataclass(frozen=True)
class FactorEffects:
    factors: tuple[str, ...]
    main: list[MainEffect]
    interactions: list[Interaction]
    error_df: int = 0  # residual degrees of freedom of the full model


@dataclass(frozen=True)
class SubGrid:
    """A complete part of a grid: the levels kept per analysed factor, and the factors held
    at one level."""

    levels: dict[str, list[str]]
    held: dict[str, str]

    @property
    def factors(self) -> tuple[str, ...]:
        return tuple(self.levels)

    @property
    def cells(self) -> int:
        return int(np.prod([len(v) for v in self.levels.values()]))

    def select(self, runs: pd.DataFrame) -> pd.DataFrame:
        mask = pd.Series(True, index=runs.index)
        for factor, levels in self.levels.items():
            mask &= runs[factor].astype(str).isin(levels)
        for factor, level in self.held.items():
            mask &= runs[factor].astype(str) == level
        return runs[mask]

    def describe(self) -> str:
        kept = "; ".join(f"{f} ({', '.join(v)})" for f, v in self.levels.items())
        held = ", ".join(f"{f} {v}" for f, v in self.held.items())
        return kept + (f" at {held}" if held else "")


def grid_gaps(runs: pd.DataFrame, factors: Sequence[str]) -> list[str]:
    """Why the grid of `runs` (the completed, included ones) over `factors` cannot be
    analysed: the combinations with no run, and those with fewer than 2; empty when the grid
    is complete."""
    levels = [sorted(runs[f].astype(str).unique()) for f in factors]
    counts = _cell_counts(runs, factors)
    gaps = []
    for combination in itertools.product(*levels):
        n = counts.get(combination, 0)
        if n < MIN_SEEDS:
            cell = "/".join(combination)
            gaps.append(f"{cell}: {'no completed run' if n == 0 else f'{n} seed'}")
    return gaps


def _cell_counts(runs: pd.DataFrame, factors: Sequence[str]) -> dict[tuple[str, ...], int]:
    keys = runs[list(factors)].astype(str).itertuples(index=False, name=None)
    counts: dict[tuple[str, ...], int] = {}
    for key in keys:
        counts[key] = counts.get(key, 0) + 1
    return counts


def largest_complete_subgrid(runs: pd.DataFrame, factors: Sequence[str]) -> SubGrid | None:
    """The complete sub-grid (every kept combination with ≥ 2 runs) with the most cells, a
    factor kept at one level being held there; ties go to more analysed factors, then more
    runs. None when no sub-grid has two cells."""
    levels = {f: sorted(runs[f].astype(str).unique()) for f in factors}
    counts = _cell_counts(runs, factors)
    best, best_key = None, None
    subsets = [[list(c) for r in range(1, len(v) + 1) for c in itertools.combinations(v, r)]
               for v in levels.values()]
    for choice in itertools.product(*subsets):
        cells = list(itertools.product(*choice))
        if len(cells) < 2 or any(counts.get(c, 0) < MIN_SEEDS for c in cells):
            continue
        analysed = sum(len(c) > 1 for c in choice)
        key = (len(cells), analysed, sum(counts[c] for c in cells))
        if best_key is None or key > best_key:
            best_key = key
            best = SubGrid({f: c for f, c in zip(factors, choice) if len(c) > 1},
                           {f: c[0] for f, c in zip(factors, choice) if len(c) == 1})
    return best


def swept_factors(runs: pd.DataFrame, candidates: Sequence[str]) -> tuple[str, ...]:
    """The candidate columns that take more than one value in `runs`."""
    return tuple(f for f in candidates if runs[f].astype(str).nunique() > 1)


@dataclass(frozen=True)
class TermTests:
    """Type III F tests of every model term, for one or many responses (columns)."""

    terms: list[tuple[str, ...]]  # factor names of each term, main effects first
    df: list[int]
    error_df: int
    f_values: np.ndarray  # (terms, responses)
    p_values: np.ndarray  # (terms, responses)


def term_tests(design: pd.DataFrame, factors: Sequence[str], responses: np.ndarray) -> TermTests:
    """The full factorial model of `factors` (columns of `design`, one row per run) with
    sum-to-zero coding, fitted to each column of `responses` (runs × responses); type III F
    test of every term (Wald test of its coefficients against the full model's residual)."""
    columns = {f: f"f{i}" for i, f in enumerate(factors)}
    data = design[list(factors)].astype(str).rename(columns=columns)
    formula = " * ".join(f"C({c}, Sum)" for c in columns.values())
    x = patsy.dmatrix(formula, data, return_type="dataframe")
    y = np.asarray(responses, dtype=float).reshape(len(data), -1)
    matrix = x.to_numpy()
    xtx_inv = np.linalg.pinv(matrix.T @ matrix)
    beta = xtx_inv @ matrix.T @ y
    residual = y - matrix @ beta
    error_df = len(data) - np.linalg.matrix_rank(matrix)
    sigma2 = (residual**2).sum(axis=0) / error_df
    names = {v: k for k, v in columns.items()}
    terms, dfs, f_values, p_values = [], [], [], []
    for term, columns_of in x.design_info.term_name_slices.items():
        if term == "Intercept":
            continue
        b = beta[columns_of]
        weights = np.linalg.inv(xtx_inv[columns_of, columns_of])
        q = b.shape[0]
        with np.errstate(divide="ignore", invalid="ignore"):
            f = np.einsum("ir,ij,jr->r", b, weights, b) / q / sigma2
        terms.append(tuple(names[part.split(",")[0][2:]] for part in term.split(":")))
        dfs.append(q)
        f_values.append(f)
        p_values.append(scipy_stats.f.sf(f, q, error_df))
    return TermTests(terms, dfs, int(error_df), np.array(f_values), np.array(p_values))


def factor_effects(runs: pd.DataFrame, factors: Sequence[str], response: str,
                   references: dict[str, str] | None = None) -> FactorEffects:
    """Main effects and every interaction of `response` (one row per run) over the
    complete grid of `factors`; ValueError naming the gaps when it is not complete.
    `references` picks each factor's reference level (default: its first, sorted)."""
    factors = tuple(factors)
    gaps = grid_gaps(runs, factors)
    if gaps:
        raise ValueError("incomplete grid: " + "; ".join(gaps))
    data = runs[[*factors, response]].astype({f: str for f in factors}).copy()
    data = data.rename(columns={response: "y", **{f: f"f{i}" for i, f in enumerate(factors)}})
    names = {f"f{i}": f for i, f in enumerate(factors)}
    references = {f: (references or {}).get(f) or sorted(data[c].unique())[0]
                  for c, f in names.items()}
    data["cell"] = data[list(names)].agg("|".join, axis=1)
    model = smf.ols("y ~ 0 + C(cell)", data).fit()
    cells = [name[len("C(cell)["):-1] for name in model.params.index]
    cell_levels = [dict(zip(names, cell.split("|"))) for cell in cells]

    main = []
    for column, factor in names.items():
        reference = references[factor]
        for level in sorted(data[column].unique()):
            if level == reference:
                continue
            contrast = _level_contrast(cell_levels, column, level, reference)
            effect, low, high, p = _contrast(model, contrast)
            se = (high - low) / 2 / scipy_stats.t.ppf(1 - ALPHA / 2, model.df_resid)
            main.append(MainEffect(factor, level, reference, effect, low, high, p_value=p, se=se))

    interactions = []
    if len(factors) >= 2:
        tests = term_tests(runs, factors, runs[response].to_numpy(dtype=float))
        for term, df, f, p in zip(tests.terms, tests.df, tests.f_values[:, 0], tests.p_values[:, 0]):
            if len(term) < 2:
                continue
            effects, intervals = _simple_effects(model, cell_levels, data, names, term,
                                                 references[term[0]])
            interactions.append(Interaction(term, float(f), float(p), df=df,
                                            reference=references[term[0]],
                                            simple_effects=effects, simple_intervals=intervals))
    p_main = [e.p_value for e in main]
    main = [_adjusted(e, float(p), float(k), model.df_resid)
            for e, p, k in zip(main, holm(p_main), holm_multipliers(p_main))]
    interactions = [
        replace(i, p_holm=p) for i, p in zip(interactions, map(float, holm([i.p_value for i in interactions])))
    ]
    return FactorEffects(factors, main, interactions, int(model.df_resid))


def _adjusted(effect: MainEffect, p_holm: float, multiplier: float, df: float) -> MainEffect:
    half = float(scipy_stats.t.ppf(1 - ALPHA / multiplier / 2, df)) * effect.se
    return replace(effect, p_holm=p_holm, adj_low=effect.effect - half,
                   adj_high=effect.effect + half)


def _contrast(model, contrast: np.ndarray) -> tuple[float, float, float, float]:
    """(estimate, 95 % CI low, high, p) of a contrast of the cell means."""
    test = model.t_test(contrast)
    low, high = np.asarray(test.conf_int(alpha=ALPHA)).ravel()
    return (float(np.squeeze(test.effect)), float(low), float(high),
            float(np.squeeze(test.pvalue)))


def _level_contrast(cell_levels: list[dict[str, str]], column: str, level: str,
                    reference: str) -> np.ndarray:
    """Weights on the cell means: mean over cells at `level` − mean over cells at `reference`."""
    at_level = np.array([c[column] == level for c in cell_levels], dtype=float)
    at_reference = np.array([c[column] == reference for c in cell_levels], dtype=float)
    return at_level / at_level.sum() - at_reference / at_reference.sum()


def _simple_effects(model, cell_levels: list[dict[str, str]], data: pd.DataFrame,
                    names: dict[str, str], term: tuple[str, ...], reference: str,
                    ) -> tuple[dict[str, dict[str, float]], dict[str, dict[str, tuple[float, float]]]]:
    """{levels of the other factors of `term`, "/"-joined: {level of term[0]: estimate}} and
    the 95 % CIs, each a contrast of the cell means averaged over the factors outside the term."""
    column = {f: c for c, f in names.items()}
    first, others = column[term[0]], [column[f] for f in term[1:]]
    effects: dict[str, dict[str, float]] = {}
    intervals: dict[str, dict[str, tuple[float, float]]] = {}
    for combination in itertools.product(*(sorted(data[c].unique()) for c in others)):
        at = np.array([all(c[o] == v for o, v in zip(others, combination)) for c in cell_levels])
        key = "/".join(combination)
        effects[key], intervals[key] = {}, {}
        for level in sorted(data[first].unique()):
            if level == reference:
                continue
            weights = _level_contrast([c for c, keep in zip(cell_levels, at) if keep], first,
                                      level, reference)
            contrast = np.zeros(len(cell_levels))
            contrast[at] = weights
            effect, low, high, _ = _contrast(model, contrast)
            effects[key][level] = effect
            intervals[key][level] = (low, high)
    return effects, intervals


def effects_markdown(effects: FactorEffects, *, unit: str = "pts", digits: int = 1) -> str:
    """The effects in words: one line per main effect, one per interaction. Direction words
    ("gains", "costs") only for what is significant after Holm."""
    lines = []
    for e in effects.main:
        others = [f for f in effects.factors if f != e.factor]
        interacting = [
            i for i in effects.interactions if e.factor in i.factors and i.p_holm < ALPHA
        ]
        qualifier = ""
        if others and not interacting:
            qualifier = f", whatever the {' and '.join(others)} (no interaction detected)"
        elif interacting:
            partners = sorted({f for i in interacting for f in i.factors if f != e.factor})
            qualifier = (f", averaged over {', '.join(others)}, but it depends on the "
                         f"{' and '.join(partners)} (see the interactions)")
        interval = f"[{e.adj_low:+.{digits}f}, {e.adj_high:+.{digits}f}] (Holm-adjusted)"
        if e.p_holm < ALPHA:
            size = f"{'gains' if e.effect > 0 else 'costs'} {abs(e.effect):.{digits}f} {unit}"
            lines.append(f"- **{e.factor} {e.level}** vs {e.reference}: {size} {interval} "
                         f"(p_holm {e.p_holm:.3f}){qualifier}.")
        else:
            lines.append(f"- **{e.factor} {e.level}** vs {e.reference}: Δ {e.effect:+.{digits}f} "
                         f"{unit} {interval} (p_holm {e.p_holm:.3f}: not significant){qualifier}.")
    for i in effects.interactions:
        name = " × ".join(i.factors)
        test = f"F({i.df}, {effects.error_df}) = {i.f_value:.2f}, p_holm {i.p_holm:.3f}"
        if i.p_holm >= ALPHA:
            lines.append(f"- {name}: no interaction detected ({test}).")
            continue
        first, others = i.factors[0], " and ".join(i.factors[1:])
        parts = []
        for at, by_level in i.simple_effects.items():
            for level, value in by_level.items():
                low, high = i.simple_intervals[at][level]
                parts.append(f"{first} {level} at {others} {at}: {value:+.{digits}f} {unit} "
                             f"[{low:+.{digits}f}, {high:+.{digits}f}]")
        lines.append(f"- **{name} interaction** ({test}); the effect of the {first} vs "
                     f"{i.reference} per level of the rest: "
                     + "; ".join(parts) + ".")
    return "\n".join(lines)
