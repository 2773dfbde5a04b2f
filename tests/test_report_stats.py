"""The report's statistics (issue 11, parts 4-6): CIs and p-values equal scipy's, the
"significant" verdict keeps its 5 % error rate under no true effect, factor effects recover
known effects, speed-up intervals and Pareto domination beyond the uncertainty."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats as scipy_stats
from statsmodels.stats.multitest import multipletests

from lightyolo.report import stats
from lightyolo.report.factors import effects_markdown, factor_effects, grid_gaps


def test_paired_when_the_seeds_match_equals_scipy() -> None:
    variant = {0: 29.0, 1: 30.5, 2: 29.8}
    baseline = {0: 30.1, 1: 31.0, 2: 31.2}
    c = stats.compare_seeds(variant, baseline)
    x, y = [29.0, 30.5, 29.8], [30.1, 31.0, 31.2]
    expected = scipy_stats.ttest_rel(x, y)
    interval = expected.confidence_interval(0.95)
    assert c.test == "paired t"
    assert c.delta == pytest.approx(np.mean(x) - np.mean(y))
    assert (c.ci_low, c.ci_high) == pytest.approx((interval.low, interval.high))
    assert c.p_value == pytest.approx(expected.pvalue)
    # Hand check of the interval: mean difference ± t(0.975, 2) · sd / √3.
    d = np.subtract(x, y)
    half = scipy_stats.t.ppf(0.975, 2) * d.std(ddof=1) / math.sqrt(3)
    assert c.ci_high - c.ci_low == pytest.approx(2 * half)


def test_differing_seed_sets_pair_on_the_common_seeds() -> None:
    variant = {0: 29.0, 1: 30.5, 2: 29.8, 3: 30.0}
    baseline = {0: 30.1, 1: 31.0, 2: 30.2}
    c = stats.compare_seeds(variant, baseline)
    expected = scipy_stats.ttest_rel([29.0, 30.5, 29.8], [30.1, 31.0, 30.2])
    assert c.test == "paired t" and c.n_pairs == 3 and (c.n_variant, c.n_baseline) == (4, 3)
    assert c.p_value == pytest.approx(expected.pvalue)


def test_unpaired_is_welchs_statistic_with_hsus_conservative_df() -> None:
    variant = {0: 29.0, 1: 30.5, 2: 29.8, 3: 30.0}
    baseline = {10: 30.1, 11: 31.0, 12: 31.4}  # no common seed
    c = stats.compare_seeds(variant, baseline)
    welch = scipy_stats.ttest_ind(list(variant.values()), list(baseline.values()), equal_var=False)
    x, y = np.array(list(variant.values())), np.array(list(baseline.values()))
    se = math.sqrt(x.var(ddof=1) / 4 + y.var(ddof=1) / 3)
    assert c.test == stats.UNPAIRED and c.df == 2  # min(4, 3) − 1
    assert (c.delta / c.se) == pytest.approx(welch.statistic)
    assert c.p_value == pytest.approx(2 * scipy_stats.t.sf(abs(welch.statistic), 2))
    assert c.p_value > welch.pvalue  # never more liberal than Welch's own df
    half = scipy_stats.t.ppf(0.975, 2) * se
    assert (c.ci_low, c.ci_high) == pytest.approx((c.delta - half, c.delta + half))


def test_unseeded_runs_never_pair() -> None:
    runs = pd.DataFrame({"seed": [pd.NA, pd.NA], "run_id": ["a", "b"]})
    from lightyolo.report.aggregate import seed_keys
    keys = seed_keys(runs)
    assert len(set(keys)) == 2 and not set(keys) & set(seed_keys(runs.assign(run_id=["c", "d"])))


def test_one_seed_is_spread_unknown() -> None:
    c = stats.compare_seeds({0: 30.0}, {0: 31.0, 1: 31.5})
    assert not c.spread_known and math.isnan(c.ci_low) and c.delta == pytest.approx(-1.25)
    assert stats.verdict(c, math.nan).startswith("spread unknown")


def test_holm_equals_statsmodels_and_keeps_nan() -> None:
    p = [0.01, 0.04, math.nan, 0.03]
    adjusted = stats.holm(p)
    expected = multipletests([0.01, 0.04, 0.03], method="holm")[1]
    assert np.isnan(adjusted[2])
    assert adjusted[[0, 1, 3]] == pytest.approx(expected)
    rng = np.random.default_rng(0)
    for size in (1, 2, 5, 15):
        p = rng.uniform(0, 0.2, size)
        assert stats.holm(p) == pytest.approx(multipletests(p, method="holm")[1])


def test_words_follow_the_adjusted_interval() -> None:
    se = 1.2 / scipy_stats.t.ppf(1 - 0.001 / 2, 2)  # the se that gives p = 0.001 at 2 df
    worse = stats.Comparison(-1.2, -2.0, -0.4, 0.001, "paired t", 3, 3, 0.9, se=se, df=2)
    assert stats.verdict(worse, 0.003).startswith("worse by 1.2 pts [")
    same = stats.Comparison(0.1, -0.8, 1.1, 0.6, "paired t", 3, 3, 1.5, se=0.22, df=2)
    text = stats.verdict(same, 0.9, margin=1.0, seeds_needed=7)
    assert text.startswith("undecided with 3 seeds (not enough seeds)")
    assert "detect ≥ 1.5 pts at 80 % power after Holm" in text and "≈ 7 seeds per side would detect 1.0 pts" in text
    corrected = stats.Comparison(1.0, 0.1, 1.9, 0.04, "paired t", 3, 3, 0.9, se=0.21, df=2)
    assert not stats.is_significant(corrected, 0.12)
    words = stats.verdict(corrected, 0.12)
    assert "not significant after Holm" in words
    assert "better" not in words and "worse" not in words  # no direction without significance
    tight = stats.Comparison(0.1, -0.2, 0.4, 0.5, "paired t", 8, 8, 0.5, se=0.1, df=7)
    assert stats.verdict(tight, 0.5, margin=1.0).startswith("no difference larger than ±1.0 pts")


def test_the_adjusted_interval_excludes_zero_exactly_when_holm_rejects() -> None:
    rng = np.random.default_rng(4)
    for _ in range(50):
        table = rng.normal(0, 1, (5, 3)) + rng.normal(0, 1.5, (5, 1)) * (rng.random((5, 1)) < 0.5)
        base = dict(enumerate(rng.normal(0, 1, 3)))
        family = [stats.compare_seeds(dict(enumerate(base[s] + row[s] for s in range(3))), base)
                  for row in table]
        p = [c.p_value for c in family]
        for c, p_holm, k in zip(family, stats.holm(p), stats.holm_multipliers(p)):
            low, high = stats.adjusted_interval(c, k)
            assert (low > 0 or high < 0) == stats.is_significant(c, p_holm)
            assert low <= c.ci_low and high >= c.ci_high  # never narrower than the raw CI


@pytest.mark.parametrize("n_seeds", [3, 5])
def test_no_true_effect_is_significant_at_most_five_percent(n_seeds: int) -> None:
    """500 simulated tables, each 4 variants vs one baseline, no true effect: the family-wise
    rate of any "significant" verdict in a table stays ≤ 5 % (+ 3 binomial sd)."""
    rng = np.random.default_rng(11 + n_seeds)
    tables, variants = 500, 4
    seed_effect = rng.normal(0, 1.0, size=(tables, 1, n_seeds))  # shared per seed: pairs
    values = 30 + seed_effect + rng.normal(0, 0.5, size=(tables, variants + 1, n_seeds))
    any_significant = 0
    single = []
    for table in values:
        base = dict(enumerate(table[0]))
        comparisons = [stats.compare_seeds(dict(enumerate(v)), base) for v in table[1:]]
        p_holm = stats.holm([c.p_value for c in comparisons])
        flags = [stats.is_significant(c, p) for c, p in zip(comparisons, p_holm)]
        any_significant += any(flags)
        single.append(comparisons[0].p_value < 0.05)
    tolerance = 3 * math.sqrt(0.05 * 0.95 / tables)
    assert any_significant / tables <= 0.05 + tolerance
    # uncorrected, one comparison: the t test's own rate is about 5 %
    assert abs(np.mean(single) - 0.05) <= tolerance


def test_a_true_two_sd_effect_is_usually_found_with_five_seeds() -> None:
    rng = np.random.default_rng(3)
    found = 0
    for _ in range(200):
        base = rng.normal(30, 0.5, 5)
        variant = base + rng.normal(1.5, 0.5, 5)  # paired: a 3-sd effect on the differences
        c = stats.compare_seeds(dict(enumerate(variant)), dict(enumerate(base)))
        found += stats.is_significant(c, stats.holm([c.p_value])[0])
    assert found / 200 > 0.8


def synthetic_grid(rng: np.random.Generator, seeds: int = 3) -> pd.DataFrame:
    """Runs of a 2 × 2 × 2 grid with known effects (points): neck slim −0.6, operator
    involution +1.0 with c3 but −1.0 with ghost (an interaction), backbone none."""
    rows = []
    for backbone in ("c3", "ghost"):
        for neck in ("pan", "slim"):
            for operator in ("conv", "involution"):
                mean = 30.0 - 0.6 * (neck == "slim")
                if operator == "involution":
                    mean += 1.0 if backbone == "c3" else -1.0
                for seed in range(seeds):
                    rows.append({"backbone": backbone, "neck": neck, "operator": operator,
                                 "seed": seed, "map50_95": mean + rng.normal(0, 0.15)})
    return pd.DataFrame(rows)


def test_factor_effects_recover_known_effects() -> None:
    runs = synthetic_grid(np.random.default_rng(0))
    effects = factor_effects(runs, ("backbone", "neck", "operator"), "map50_95",
                             references={"backbone": "c3", "neck": "pan", "operator": "conv"})
    main = {(e.factor, e.level): e for e in effects.main}
    neck = main[("neck", "slim")]
    assert neck.ci_low < -0.6 < neck.ci_high and neck.p_value < 0.05
    assert main[("backbone", "ghost")].effect == pytest.approx(-1.0, abs=0.3)  # via involution
    operator = main[("operator", "involution")]
    assert operator.ci_low < 0.0 < operator.ci_high  # +1 and −1 average out
    # The interaction is found, and spelled out per backbone.
    by_pair = {i.factors: i for i in effects.interactions}
    interaction = by_pair[("backbone", "operator")]
    assert interaction.p_holm < 1e-4
    assert by_pair[("backbone", "neck")].p_value > 0.001
    assert interaction.simple_effects["conv"]["ghost"] == pytest.approx(0.0, abs=0.3)
    by_operator = factor_effects(runs, ("operator", "backbone"), "map50_95").interactions[0]
    assert by_operator.simple_effects["c3"]["involution"] == pytest.approx(1.0, abs=0.3)
    assert by_operator.simple_effects["ghost"]["involution"] == pytest.approx(-1.0, abs=0.3)
    text = effects_markdown(effects)
    assert "**neck slim** vs pan: costs 0." in text
    involution = next(line for line in text.splitlines() if "**operator involution**" in line)
    assert "vs conv: Δ " in involution and "not significant" in involution
    assert "costs" not in involution and "gains" not in involution  # no direction: not significant
    assert "**backbone × operator interaction**" in text


def test_main_effect_ci_equals_the_hand_computed_contrast() -> None:
    runs = synthetic_grid(np.random.default_rng(1), seeds=2)
    effect = next(e for e in factor_effects(runs, ("backbone", "neck", "operator"),
                                             "map50_95").main if e.factor == "neck")
    cells = runs.groupby(["backbone", "neck", "operator"])["map50_95"]
    means = cells.mean().unstack("neck")
    estimate = (means["slim"] - means["pan"]).mean()
    residual = runs["map50_95"] - cells.transform("mean")
    df = len(runs) - 8
    s2 = (residual ** 2).sum() / df
    se = math.sqrt(s2 * (4 * (1 / 16) * (1 / 2) * 2))  # 8 cells, weight ±1/4, 2 runs each
    half = scipy_stats.t.ppf(0.975, df) * se
    assert effect.effect == pytest.approx(estimate)
    assert (effect.ci_low, effect.ci_high) == pytest.approx((estimate - half, estimate + half))


def test_a_partial_grid_names_what_is_missing() -> None:
    runs = synthetic_grid(np.random.default_rng(2))
    partial = runs[~((runs["backbone"] == "ghost") & (runs["neck"] == "slim")
                     & (runs["operator"] == "involution"))]
    partial = partial[~((partial["backbone"] == "c3") & (partial["neck"] == "pan")
                        & (partial["operator"] == "conv") & (partial["seed"] > 0))]
    gaps = grid_gaps(partial, ("backbone", "neck", "operator"))
    assert gaps == ["c3/pan/conv: 1 seed", "ghost/slim/involution: no completed run"]
    with pytest.raises(ValueError, match="incomplete grid: c3/pan/conv: 1 seed"):
        factor_effects(partial, ("backbone", "neck", "operator"), "map50_95")


def test_speedup_interval_from_latency_intervals() -> None:
    faster = stats.speedup_interval(20.0, 19.0, 21.0, 10.0, 9.5, 10.5)
    assert faster.ratio == pytest.approx(2.0)
    assert (faster.low, faster.high) == pytest.approx((19.0 / 10.5, 21.0 / 9.5))
    assert faster.words().startswith("faster: 2.00× [1.81, 2.21]")
    overlap = stats.speedup_interval(10.0, 9.0, 11.0, 9.8, 9.0, 10.6)
    assert overlap.words().startswith("no speed difference shown")
    unknown = stats.speedup_interval(10.0, math.nan, math.nan, 5.0, 4.0, 6.0)
    assert unknown.words() == "2.00× (interval unknown)"


def test_pareto_dominated_only_by_the_one_rule() -> None:
    # A beats B by the rule (Holm-significant over the pairs) and costs less: B dominated.
    # C is beaten by A's point estimates but not by the rule: undecided. D has one seed
    # (spread unknown): never decided, though A is far above it nominally.
    rng = np.random.default_rng(0)
    shared = rng.normal(0, 1.0, 5)
    values = [dict(enumerate(32.0 + shared + rng.normal(0, 0.1, 5))),
              dict(enumerate(28.0 + shared + rng.normal(0, 0.1, 5))),
              dict(enumerate(31.5 + shared + rng.normal(0, 3.0, 5))),
              {0: 27.0}]
    better = stats.pairwise_better(values)
    assert better[1, 0] and not better[2, 0] and not better[3, 0] and not better[0].any()
    score = np.array([np.mean(list(v.values())) for v in values])
    gflops = np.array([4.0, 4.5, 4.2, 5.0])
    status = stats.pareto_status(score, gflops, gflops, gflops, better)
    assert status == ["optimal", "dominated", "undecided", "undecided"]


def test_mean_interval_is_the_t_interval() -> None:
    low, high = stats.mean_interval([1.0, 2.0, 3.0])
    expected = scipy_stats.t.interval(0.95, 2, loc=2.0, scale=scipy_stats.sem([1.0, 2.0, 3.0]))
    assert (low, high) == pytest.approx(expected)
    assert all(math.isnan(v) for v in stats.mean_interval([1.0]))


def unbalanced_grid(rng: np.random.Generator) -> pd.DataFrame:
    """A 4 × 2 × 2 grid with 2-4 seeds per cell and effects of every order."""
    rows = []
    for b, backbone in enumerate(("c3", "ghost", "mobilenetv3", "shufflenetv2")):
        for n, neck in enumerate(("pan", "slim")):
            for o, operator in enumerate(("conv", "involution")):
                mean = 30 + b - n + 2 * o * (b % 2) + 4.0 * (b == 2) * n * o
                for seed in range(2 + (b + n + o) % 3):
                    rows.append({"backbone": backbone, "neck": neck, "operator": operator,
                                 "seed": seed, "map50_95": mean + rng.normal(0, 0.5)})
    return pd.DataFrame(rows)


def test_interactions_are_type_three_of_the_full_model_as_statsmodels() -> None:
    """Every term of the full factorial model, sum-to-zero coding, type III, unbalanced."""
    import statsmodels.formula.api as smf
    from statsmodels.stats.anova import anova_lm
    runs = unbalanced_grid(np.random.default_rng(7))
    effects = factor_effects(runs, ("backbone", "neck", "operator"), "map50_95")
    model = smf.ols("map50_95 ~ C(backbone, Sum) * C(neck, Sum) * C(operator, Sum)", runs).fit()
    table = anova_lm(model, typ=3)
    by_term = {i.factors: i for i in effects.interactions}
    assert set(by_term) == {("backbone", "neck"), ("backbone", "operator"), ("neck", "operator"),
                            ("backbone", "neck", "operator")}
    for term, interaction in by_term.items():
        row = table.loc[":".join(f"C({f}, Sum)" for f in term)]
        assert interaction.f_value == pytest.approx(row["F"])
        assert interaction.p_value == pytest.approx(row["PR(>F)"])
    assert effects.error_df == model.df_resid  # one error term for main effects and interactions
    for e in effects.main:  # the one rule: the adjusted interval excludes 0 iff Holm rejects
        assert (e.adj_low > 0 or e.adj_high < 0) == (e.p_holm < 0.05)
        assert e.adj_low <= e.ci_low + 1e-12 and e.adj_high >= e.ci_high - 1e-12
    three_way = by_term[("backbone", "neck", "operator")]
    assert three_way.p_holm < 0.05
    assert "**backbone × neck × operator interaction**" in effects_markdown(effects)


def test_a_planted_three_way_interaction_is_found_at_its_analytic_power() -> None:
    """4 × 2 × 2 grid, 5 seeds, only a three-way interaction (sum-to-zero in every margin),
    of the size that gives its F test 80 % power at α / 4 (Bonferroni over the 4
    interactions, which Holm's power is at least): found (Holm p < 0.05) in ≥ 80 %."""
    from lightyolo.report.factors import term_tests
    seeds, sd, reps = 5, 1.0, 1000
    pattern = np.array([1.0, -1.0, 1.0, -1.0])[:, None, None] * np.array([1.0, -1.0])[None, :, None] \
        * np.array([1.0, -1.0])[None, None, :]
    df1, df2 = 3, 16 * (seeds - 1)
    critical = scipy_stats.f.ppf(1 - 0.05 / 4, df1, df2)
    from scipy import optimize
    lam = optimize.brentq(lambda x: scipy_stats.ncf.sf(critical, df1, df2, x) - 0.8, 0.1, 200)
    size = math.sqrt(lam * sd**2 / (seeds * (pattern**2).sum()))  # λ = n Σγ² / σ²
    cells = list(np.ndindex(4, 2, 2))
    design = pd.DataFrame([{"backbone": f"b{b}", "neck": f"n{n}", "operator": f"o{o}"}
                           for b, n, o in cells for _ in range(seeds)])
    planted = np.repeat([size * pattern[c] for c in cells], seeds)
    rng = np.random.default_rng(29)
    y = 30 + planted[:, None] + rng.normal(0, sd, (len(design), reps))
    tests = term_tests(design, ("backbone", "neck", "operator"), y)
    interactions = [i for i, t in enumerate(tests.terms) if len(t) > 1]
    three = tests.terms.index(("backbone", "neck", "operator"))
    found = np.mean([stats.holm(tests.p_values[interactions, r])[interactions.index(three)] < 0.05
                     for r in range(reps)])
    print(f"planted three-way (±{size:.2f} pts per cell, λ = {lam:.1f}): found in {found:.1%} of {reps}")
    assert found >= 0.80
    # The two-way terms carry nothing: each is false-positive at ≤ 5 %.
    for i in interactions:
        if i != three:
            assert np.mean(tests.p_values[i] < 0.05) <= 0.05 + 3 * math.sqrt(0.0475 / reps)


def test_an_incomplete_grid_is_analysed_on_its_largest_complete_subgrid() -> None:
    from lightyolo.report.factors import largest_complete_subgrid
    runs = unbalanced_grid(np.random.default_rng(8))
    star = runs[((runs["neck"] == "pan") & (runs["operator"] == "conv"))
                | ((runs["backbone"] == "c3") & (runs["operator"] == "conv"))]
    sub = largest_complete_subgrid(star, ("backbone", "neck", "operator"))
    assert sub.levels == {"backbone": ["c3", "ghost", "mobilenetv3", "shufflenetv2"]}
    assert sub.held == {"neck": "pan", "operator": "conv"} and sub.cells == 4
    assert sub.describe() == "backbone (c3, ghost, mobilenetv3, shufflenetv2) at neck pan, operator conv"
    effects = factor_effects(sub.select(star), sub.factors, "map50_95")
    assert [e.level for e in effects.main] == ["ghost", "mobilenetv3", "shufflenetv2"]
