"""Factor effects of a complete grid: main effects with CIs, two-factor interactions.

On the runs of one recipe (every combination of the swept factors present, ≥ 2 seeds
each), fitted with statsmodels OLS:

- a main effect is the difference of one level's mean from the reference level's, each
  averaged over the other factors' levels (a contrast of the cell means, so an unbalanced
  seed count does not tilt it); its 95 % CI and p use the pooled within-cell error of the
  cell-means model `y ~ C(cell)`;
- interactions: `anova_lm(typ=2)` of `y ~ (C(f1) + C(f2) + ...) ** 2`; a significant one is
  spelled out as the effect of one factor at each level of the other;
- p-values are Holm-adjusted within the main effects and within the interactions of a grid,
  and the words follow the adjusted ones.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

import numpy as np
import pandas as pd
import statsmodels.formula.api as smf
from statsmodels.stats.anova import anova_lm

from lightyolo.report.stats import holm

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


@dataclass(frozen=True)
class Interaction:
    factors: tuple[str, str]
    f_value: float
    p_value: float
    p_holm: float = float("nan")  # Holm-adjusted over the interactions of the grid
    # effect of factors[0]'s levels vs its reference at each level of factors[1]
    simple_effects: dict[str, dict[str, float]] = field(default_factory=dict)


@dataclass(frozen=True)
class FactorEffects:
    factors: tuple[str, ...]
    main: list[MainEffect]
    interactions: list[Interaction]


def grid_gaps(runs: pd.DataFrame, factors: Sequence[str]) -> list[str]:
    """Why the grid of `runs` (the completed, included ones) over `factors` cannot be
    analysed: the combinations with no run, and those with fewer than 2; empty when the grid
    is complete."""
    levels = [sorted(runs[f].astype(str).unique()) for f in factors]
    counts = runs.astype({f: str for f in factors}).groupby(list(factors)).size()
    gaps = []
    for combination in itertools.product(*levels):
        n = int(counts.get(combination, 0)) if len(factors) > 1 else int(
            counts.get(combination[0], 0))
        if n < MIN_SEEDS:
            cell = "/".join(combination)
            gaps.append(f"{cell}: {'no completed run' if n == 0 else f'{n} seed'}")
    return gaps


def swept_factors(runs: pd.DataFrame, candidates: Sequence[str]) -> tuple[str, ...]:
    """The candidate columns that take more than one value in `runs`."""
    return tuple(f for f in candidates if runs[f].astype(str).nunique() > 1)


def factor_effects(runs: pd.DataFrame, factors: Sequence[str], response: str,
                   references: dict[str, str] | None = None) -> FactorEffects:
    """Main effects and two-factor interactions of `response` (one row per run) over the
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
            test = model.t_test(contrast)
            low, high = np.asarray(test.conf_int(alpha=ALPHA)).ravel()
            main.append(MainEffect(factor, level, reference, float(np.squeeze(test.effect)),
                                   float(low), float(high), p_value=float(np.squeeze(test.pvalue))))

    interactions = []
    if len(factors) >= 2:
        terms = " + ".join(f"C({c})" for c in names)
        table = anova_lm(smf.ols(f"y ~ ({terms}) ** 2", data).fit(), typ=2)
        for a, b in itertools.combinations(names, 2):
            row = table.loc[f"C({a}):C({b})"]
            interactions.append(Interaction(
                (names[a], names[b]), float(row["F"]), float(row["PR(>F)"]),
                simple_effects=_simple_effects(data, a, b, references[names[a]]),
            ))
    main = [replace(e, p_holm=p) for e, p in zip(main, map(float, holm([e.p_value for e in main])))]
    interactions = [
        replace(i, p_holm=p) for i, p in zip(interactions, map(float, holm([i.p_value for i in interactions])))
    ]
    return FactorEffects(factors, main, interactions)


def _level_contrast(cell_levels: list[dict[str, str]], column: str, level: str,
                    reference: str) -> np.ndarray:
    """Weights on the cell means: mean over cells at `level` − mean over cells at `reference`."""
    at_level = np.array([c[column] == level for c in cell_levels], dtype=float)
    at_reference = np.array([c[column] == reference for c in cell_levels], dtype=float)
    return at_level / at_level.sum() - at_reference / at_reference.sum()


def _simple_effects(data: pd.DataFrame, a: str, b: str, reference: str) -> dict[str, dict[str, float]]:
    """{level of b: {level of a: mean(a=level) − mean(a=reference)}}, cell means averaged
    over any other factors."""
    cell_means = data.groupby([c for c in data.columns if c not in ("y", "cell")])["y"].mean()
    by_ab = cell_means.groupby(level=[a, b]).mean()
    effects: dict[str, dict[str, float]] = {}
    for b_level in sorted(data[b].unique()):
        base = by_ab[(reference, b_level)]
        effects[b_level] = {
            a_level: float(by_ab[(a_level, b_level)] - base)
            for a_level in sorted(data[a].unique()) if a_level != reference
        }
    return effects


def effects_markdown(effects: FactorEffects, *, unit: str = "pts", digits: int = 1) -> str:
    """The effects in words: one line per main effect, one per interaction."""
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
            qualifier = f", averaged over {', '.join(others)}, but it depends on the " + (
                " and ".join(next(f for f in i.factors if f != e.factor) for i in interacting)
            ) + " (see the interactions)"
        significant = "" if e.p_holm < ALPHA else ": not significant"
        direction = "gains" if e.effect > 0 else "costs"
        lines.append(
            f"- **{e.factor} {e.level}** vs {e.reference}: {direction} "
            f"{abs(e.effect):.{digits}f} {unit} [{e.ci_low:+.{digits}f}, {e.ci_high:+.{digits}f}]"
            f" (p_holm {e.p_holm:.3f}{significant}){qualifier}."
        )
    for i in effects.interactions:
        a, b = i.factors
        if i.p_holm >= ALPHA:
            lines.append(f"- {a} × {b}: no interaction detected (F {i.f_value:.2f}, "
                         f"p_holm {i.p_holm:.3f}).")
            continue
        parts = []
        for b_level, by_a in i.simple_effects.items():
            for a_level, value in by_a.items():
                verb = "helps" if value > 0 else "hurts"
                parts.append(f"{a} {a_level} {verb} {b} {b_level} ({value:+.{digits}f} {unit})")
        lines.append(f"- **{a} × {b} interaction** (F {i.f_value:.2f}, p_holm {i.p_holm:.3f}): "
                     + "; ".join(parts) + ".")
    return "\n".join(lines)
