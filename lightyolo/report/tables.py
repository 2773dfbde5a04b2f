"""Markdown for the ablation report: conventions block, main table, one-factor tables,
factor effects.

Renders the frames `aggregate` builds (and the factor effects of complete grids); mAP is
shown in points (×100 of the COCO fractions the runs log), mean ± sample std over seeds.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path

import pandas as pd

from lightyolo.report.aggregate import POINTS, Baseline, included_runs, one_factor_rows
from lightyolo.report.collect import CONTEXT_KEYS, FACTOR_KEYS, UNKNOWN
from lightyolo.report.factors import effects_markdown, factor_effects, grid_gaps, swept_factors

FLOPS_CONVENTION = (
    "2 × multiply-accumulates of the convolutions and linear layers with BatchNorm folded "
    "(thop), plus Involution's aggregation (K²·C·H·W multiply-adds), at the run's image size "
    "(references.md)"
)
TEST_RULE = (
    "ΔmAP50-95 with its 95 % CI over seeds: a paired t test when the variant and the baseline "
    "ran the same seeds, Welch's t otherwise; p_holm is Holm-adjusted over the comparisons "
    "of one recipe; **significant** only when p_holm < 0.05"
)
DASH = "—"
ERROR_CHARS = 120


def markdown_table(header: Sequence[str], rows: Iterable[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(_cell(value) for value in row) + " |" for row in rows]
    return "\n".join(lines)


def _cell(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def mean_std(mean: float, std: float, digits: int, scale: float = 1.0) -> str:
    """"28.1 ± 0.4", or "28.1" for a single seed, or "—" when nothing was measured."""
    if pd.isna(mean):
        return DASH
    text = f"{mean * scale:.{digits}f}"
    return text if pd.isna(std) else f"{text} ± {std * scale:.{digits}f}"


def signed(value: float, digits: int, suffix: str = "") -> str:
    return DASH if pd.isna(value) else f"{value:+.{digits}f}{suffix}"


def _distinct(values: pd.Series) -> str:
    seen = sorted({str(v) for v in values.dropna() if str(v) != ""})
    return ", ".join(seen) if seen else "not logged"


def conventions_block(
    runs: pd.DataFrame, variants: pd.DataFrame, *, experiment: str, tracking_uri: str,
    baseline: Baseline,
) -> str:
    """The settings a reader needs before comparing numbers, and the cells with no result."""
    counts = runs["status"].value_counts()
    read = ", ".join(f"{counts.get(s, 0)} {s}" for s in ("completed", "failed", "running"))
    lines = [
        "## Conventions",
        "",
        f"- **Experiment**: `{experiment}` at `{tracking_uri}`; {len(runs)} runs read ({read}).",
        f"- **Dataset**: {_distinct(runs['dataset'])}; **epochs**: {_distinct(runs['epochs'])}; "
        f"**image size**: {_distinct(runs['img_size'])}; **scale**: {_distinct(runs['scale'])}.",
        "- **mAP**: COCO mAP (pycocotools) in points; mAP50-95 averages IoU 0.50:0.95.",
        f"- **FLOPs**: {FLOPS_CONVENTION}.",
        f"- **Latency**: median over {_distinct(runs['bench_iters'])} timed iterations after "
        f"{_distinct(runs['bench_warmup'])} warm-up, batch {_distinct(runs['latency_batch'])}, "
        f"{_distinct(runs['latency_threads'])} threads, on {_distinct(runs['latency_device'])}.",
        "- **Seeds**: mean ± sample std (ddof=1) over seeds, the newest completed run per seed; "
        "failed runs never enter a mean.",
        f"- **Baseline**: {baseline} of the same recipe (scale, image size, dataset and every "
        "other identity key); ΔmAP in points, Δparams and ΔGFLOPs in %, speed-up = baseline "
        "latency / latency.",
        f"- **Code**: lightyolo {_distinct(runs['lightyolo_version'])}, "
        f"git {_distinct(runs['git_sha'])}{_code_note(runs)}.",
        f"- **Rows**: one per (backbone, neck, operator) and recipe (the run's identity minus "
        f"the seed: config minus execution keys, dataset content, weights, code); runs of "
        f"different recipes are never averaged.{_recipes_note(variants)}",
        f"- **Statistics**: {TEST_RULE}; with one seed on a side the spread is unknown.",
        "- **Pareto**: within (dataset, scale, image size; for latency also the device); "
        "★ = no other variant has ≥ mAP50-95 and ≤ cost with one strict; a point beaten by "
        "the point estimates is *dominated* only when the other's 95 % mAP interval lies "
        "above its own and the cost is no higher beyond the uncertainty, else *undecided*.",
        *_split_notes(runs),
    ]
    unfinished = variants[variants["status"] != "completed"]
    partly_failed = runs[
        (runs["status"] == "failed")
        & runs["run_id"].isin(_failed_runs_of_completed(runs, variants))
    ]
    if len(unfinished) or len(partly_failed):
        lines += ["", "### Failed and missing cells", ""]
        header = ["backbone", "neck", "operator", "scale", "img", "dataset", "status", "error"]
        rows = [
            [*_coordinates(v), v["status"], _short(v["error"])] for _, v in unfinished.iterrows()
        ]
        rows += [
            [*_coordinates(r), f"seed {r['seed']} failed", _short(r["error"])]
            for _, r in partly_failed.iterrows()
        ]
        lines.append(markdown_table(header, rows))
    return "\n".join(lines)


def _code_note(runs: pd.DataFrame) -> str:
    codes = _distinct(runs["code_identity"])
    note = f"; code identity {codes}" if codes != "not logged" else ""
    kept = int(runs["reuse_across_code"].sum())
    if kept:
        note += (f"; **{kept} run(s) kept across code versions** (reuse_across_code=true): "
                 "their rows may mix code versions")
    return note


def _recipes_note(variants: pd.DataFrame) -> str:
    diffs = sorted({d for d in variants["recipe_diff"].dropna() if d})
    if not diffs:
        return ""
    return " **Several recipes** in one context, named in the `recipe` column: " + "; ".join(
        f"`{d}`" for d in diffs) + "."


def _split_notes(runs: pd.DataFrame) -> list[str]:
    """Which split the reported metrics come from, and warnings about the data."""
    done = runs[runs["status"] == "completed"]
    splits = sorted({str(s) for s in done["eval_split"].dropna()})
    if splits == ["test"]:
        split = ("test (the best epoch was chosen on val; the test split was not used for "
                 "selection)")
    elif splits:
        split = ", ".join(splits) + (" (val is also used for model selection)"
                                     if "val" in splits else "")
    else:
        split = "val (also used for model selection: the best epoch is picked on it)"
    if done["best_map50_95"].notna().any():
        split += "; the best epoch's val mAP is logged apart as `best/map50_95`"
    notes = [f"- **Reported split**: {split}."]
    if done["val_is_train"].any():
        notes.append(
            "- **Warning: val is the train set** for "
            f"{_distinct(done.loc[done['val_is_train'], 'dataset'])} (dataset.val = "
            "dataset.train): its mAP measures fitting, not generalisation."
        )
    issues = done["data_issues"].dropna().astype(str)
    if len(issues):
        notes.append(
            f"- **Warning: data issues** counted by the readers in {len(issues)} run(s): "
            f"{', '.join(sorted(set(issues)))} (the affected files were skipped)."
        )
    return notes


def _failed_runs_of_completed(runs: pd.DataFrame, variants: pd.DataFrame) -> set[str]:
    """Failed runs of a seed that never completed, inside a variant that has other seeds."""
    keys = [*FACTOR_KEYS, *CONTEXT_KEYS, "recipe"]
    done = runs[runs["status"] == "completed"]
    done_cells = set(done[[*keys, "seed"]].astype(str).itertuples(index=False, name=None))
    done_variants = set(done[keys].astype(str).itertuples(index=False, name=None))
    failed_ids = set()
    for _, run in runs[runs["status"] == "failed"].iterrows():
        variant = tuple(str(run[k]) for k in keys)
        if variant in done_variants and (*variant, str(run["seed"])) not in done_cells:
            failed_ids.add(run["run_id"])
    return failed_ids


def _coordinates(row: pd.Series) -> list[str]:
    keys = ("backbone", "neck", "operator", "scale", "img_size", "dataset")
    return [UNKNOWN if pd.isna(row[k]) else str(row[k]) for k in keys]


def _short(error: object) -> str:
    """The last line of an error (a traceback's exception line), cut to ERROR_CHARS."""
    if pd.isna(error) or not str(error).strip():
        return ""
    text = str(error).strip().splitlines()[-1]
    return text if len(text) <= ERROR_CHARS else text[: ERROR_CHARS - 1] + "…"


def _note(row: pd.Series) -> str:
    if row["status"] == "failed":
        return f"**failed**: {_short(row['error'])}"
    if row["status"] == "missing":
        return "**missing** (no run)"
    if row["status"] == "running":
        return "**running** (no final status)"
    note = "baseline" if row.get("is_baseline", False) else ""
    if row["n_failed"]:
        note = ", ".join(filter(None, [note, f"{row['n_failed']} seed(s) failed"]))
    return note


def _delta_ci(row: pd.Series, metric: str = "map50_95") -> str:
    """"-2.0 [-3.1, -0.9]", or the Δ alone when its interval is unknown."""
    delta = signed(row[f"delta_{metric}"], 1)
    low, high = row.get(f"delta_{metric}_ci_low"), row.get(f"delta_{metric}_ci_high")
    if delta == DASH or pd.isna(low) or pd.isna(high):
        return delta
    return f"{delta} [{low:+.1f}, {high:+.1f}]"


def _p(value: float) -> str:
    return DASH if pd.isna(value) else f"{value:.3f}"


def _pareto(row: pd.Series, flag: str) -> str:
    status = row.get(f"{flag}_status", "")
    return {"optimal": "★", "undecided": "undecided"}.get(status, "")


def main_table(variants: pd.DataFrame) -> str:
    recipes = bool(variants["recipe_diff"].fillna("").astype(bool).any())
    header = [
        "backbone", "neck", "operator", "scale", "img", "dataset", *(["recipe"] if recipes else []),
        "seeds", "params (M)", "GFLOPs", "mAP50", "mAP50-95", "latency (ms)", "FPS", "device",
        "ΔmAP50-95 (pts) [95 % CI]", "p_holm", "Δparams", "ΔGFLOPs", "speed-up",
        "Pareto GFLOPs", "Pareto latency", "note",
    ]
    rows = []
    for _, v in variants.iterrows():
        rows.append([
            *_coordinates(v),
            *([v["recipe_diff"] or DASH] if recipes else []),
            str(v["n_seeds"]),
            mean_std(v["params_m_mean"], v["params_m_std"], 3),
            mean_std(v["gflops_mean"], v["gflops_std"], 2),
            mean_std(v["map50_mean"], v["map50_std"], 1, POINTS),
            mean_std(v["map50_95_mean"], v["map50_95_std"], 1, POINTS),
            mean_std(v["latency_ms_mean"], v["latency_ms_std"], 2),
            mean_std(v["fps_mean"], v["fps_std"], 1),
            v["latency_device"] or DASH,
            _delta_ci(v),
            _p(v["p_holm"]),
            signed(v["delta_params_pct"], 1, " %"),
            signed(v["delta_gflops_pct"], 1, " %"),
            DASH if pd.isna(v["speedup"]) else f"{v['speedup']:.2f}×",
            _pareto(v, "pareto_gflops"),
            _pareto(v, "pareto_latency"),
            _note(v),
        ])
    return markdown_table(header, rows)


def comparison_verdict(row: pd.Series) -> str:
    """The variant's ΔmAP50-95 against the baseline, in words (stats.verdict)."""
    if row["is_baseline"]:
        return "baseline"
    if row["status"] != "completed":
        return row["status"]
    if pd.isna(row["delta_map50_95"]):
        return "no completed baseline to compare with"
    return row["verdict"]


def one_factor_tables(variants: pd.DataFrame, baseline: Baseline) -> str:
    """One table per factor (backbone, neck, operator) and per (scale, img, dataset), the
    other two factors held at the baseline, like the ablation tables of the papers."""
    sections = []
    for key, group in variants.groupby([*CONTEXT_KEYS, "recipe"], dropna=False, sort=True):
        scale, img_size, dataset = (str(v) for v in key[:3])
        recipe = group["recipe_diff"].iloc[0]
        recipe = f"; {recipe}" if isinstance(recipe, str) and recipe else ""
        for factor in FACTOR_KEYS:
            rows = one_factor_rows(group, factor, baseline)
            if len(rows) < 2:
                continue
            held = ", ".join(f"{k} {v}" for k, v in zip(FACTOR_KEYS, baseline) if k != factor)
            sections.append(
                f"### Effect of the {factor} ({held}; scale {scale}, img {img_size}, {dataset}"
                f"{recipe})\n\n" + _factor_table(rows, factor)
            )
    if not sections:
        return "No one-factor comparison: no variant shares two factors with the baseline."
    return f"{TEST_RULE}.\n\n" + "\n\n".join(sections)


def _factor_table(rows: pd.DataFrame, factor: str) -> str:
    header = [
        factor, "seeds", "params (M)", "Δparams", "GFLOPs", "ΔGFLOPs", "mAP50", "mAP50-95",
        "ΔmAP50-95 (pts) [95 % CI]", "p", "p_holm", "latency (ms)", "speed-up", "verdict",
    ]
    methods = [c[len("speedup_"):-len("_verdict")] for c in rows.columns
               if c.startswith("speedup_") and c.endswith("_verdict")]
    header += [f"speed-up {m} [interval]" for m in methods]
    body = []
    for _, v in rows.iterrows():
        body.append([
            str(v[factor]),
            str(v["n_seeds"]),
            mean_std(v["params_m_mean"], v["params_m_std"], 3),
            signed(v["delta_params_pct"], 1, " %"),
            mean_std(v["gflops_mean"], v["gflops_std"], 2),
            signed(v["delta_gflops_pct"], 1, " %"),
            mean_std(v["map50_mean"], v["map50_std"], 1, POINTS),
            mean_std(v["map50_95_mean"], v["map50_95_std"], 1, POINTS),
            _delta_ci(v),
            _p(v["p_value"]),
            _p(v["p_holm"]),
            mean_std(v["latency_ms_mean"], v["latency_ms_std"], 2),
            DASH if pd.isna(v["speedup"]) else f"{v['speedup']:.2f}×",
            comparison_verdict(v),
            *[v[f"speedup_{m}_verdict"] or DASH for m in methods],
        ])
    return markdown_table(header, body)


def factor_effects_section(runs: pd.DataFrame, variants: pd.DataFrame,
                           baseline: Baseline) -> str:
    """Per recipe: the main effects and interactions of a complete grid (factors.py), or
    what a partial grid cannot estimate."""
    used = included_runs(runs)
    used = used[used["map50_95"].notna()]
    sections = []
    references = dict(zip(FACTOR_KEYS, baseline))
    for key, group in used.groupby([*CONTEXT_KEYS, "recipe"], dropna=False, sort=True):
        scale, img_size, dataset = (str(v) for v in key[:3])
        recipe = variants.loc[variants["recipe"] == key[3], "recipe_diff"]
        recipe = f"; {recipe.iloc[0]}" if len(recipe) and recipe.iloc[0] else ""
        factors = swept_factors(group, FACTOR_KEYS)
        if not factors:
            continue
        title = f"### {' × '.join(factors)} (scale {scale}, img {img_size}, {dataset}{recipe})"
        gaps = grid_gaps(group, factors)
        if gaps:
            sections.append(
                f"{title}\n\nIncomplete grid: main effects and interactions are not "
                "estimated (every combination of the swept factors needs ≥ 2 completed "
                f"seeds). Missing: {'; '.join(gaps)}."
            )
            continue
        data = group.assign(map50_95=group["map50_95"] * POINTS)
        effects = factor_effects(data, factors, "map50_95", references=references)
        sections.append(f"{title}\n\n{effects_markdown(effects)}")
    if not sections:
        return "No factor is swept: nothing to estimate."
    return ("Main effects: a level's mean mAP50-95 minus the reference level's, each averaged "
            "over the other factors' levels, with a 95 % CI from the pooled within-cell error "
            "(OLS on the cell means); interactions: two-way ANOVA (type II) on the runs; "
            "p-values Holm-adjusted within the main effects and within the interactions.\n\n"
            + "\n\n".join(sections))


def report_markdown(
    runs: pd.DataFrame, variants: pd.DataFrame, plots: Sequence[Path], *, experiment: str,
    tracking_uri: str, baseline: Baseline, out_dir: Path,
) -> str:
    """The whole ablation.md; `plots` are embedded relative to `out_dir`."""
    images = "\n\n".join(f"![{p.stem}]({p.relative_to(out_dir).as_posix()})" for p in plots)
    parts = [
        f"# Ablation report: {experiment}",
        conventions_block(
            runs, variants, experiment=experiment, tracking_uri=tracking_uri, baseline=baseline
        ),
        "## Main table\n\n" + main_table(variants),
        "## Tradeoffs\n\n" + (images or "No completed variant with both mAP and cost to plot."),
        "## One-factor tables\n\n" + one_factor_tables(variants, baseline),
        "## Factor effects\n\n" + factor_effects_section(runs, variants, baseline),
    ]
    return "\n\n".join(parts) + "\n"
