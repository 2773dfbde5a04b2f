"""Markdown for the ablation report: conventions block, the sections around the main table
(lightyolo/report/main_table.py), one-factor tables, factor effects.

Renders the frames `aggregate` builds (and the factor effects of complete grids); mAP is
shown in points (×100 of the COCO fractions the runs log), mean ± sample std over seeds.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from lightyolo.bench.stage import CI_METHOD
from lightyolo.data.yolo_format import EMPTY_LABEL_FILE as EMPTY_LABEL
from lightyolo.configs import DEFAULT_HEAD
from lightyolo.report import stats
from lightyolo.report.aggregate import (
    MARGIN, POINTS, Baseline, bench_latency_methods, included_runs, one_factor_rows,
)
from lightyolo.report.cells import (
    DASH, bench_latency, coordinate_header, coordinates, delta_ci, markdown_table, mean_std,
    p_value, short_error, shows_heads, signed,
)
from lightyolo.report.collect import CONTEXT_KEYS, FACTOR_KEYS
from lightyolo.report.main_table import cost_latency_table, main_table, main_table_methods
from lightyolo.report.latency_noise import SharedState, fit_shared_state
from lightyolo.report.sequential import SequentialDesign
from lightyolo.report.factors import (
    effects_markdown, factor_effects, grid_gaps, largest_complete_subgrid, swept_factors,
)

FLOPS_CONVENTION = (
    "2 × multiply-accumulates of the convolutions and linear layers with BatchNorm folded "
    "(thop), plus Involution's aggregation (K²·C·H·W multiply-adds), at the run's image size "
    "(docs/references.md); GFLOPs@640 is the same count at 640×640 (`gflops_640`), the size papers "
    "quote, where the runs logged it"
)
QUICK_LATENCY = (
    "a **quick figure**: wall clock, measured inside the training process right after "
    "training, BatchNorm unfused, eager PyTorch; no interval, so no speed-up is computed "
    "from it"
)
SEED_COMBINATION = (
    "a variant with several seeds gets the median of its runs' medians and the envelope of "
    "their 95 % CIs (lowest low, highest high)"
)
SPEEDUP_RULE = (
    "speed-up = baseline / variant latency of the same method: paired by round when both "
    "cells' round medians come from one bench run (median and 95 % bootstrap CI over rounds "
    "of the per-round ratio; several seeds: the median over seeds per round), else from the "
    "two CIs (baseline low / variant high … baseline high / variant low, ≥ 90 % coverage)"
)
MAX_PAIRS = 8  # "fewer FLOPs but slower" pairs named per method
GRID_DATASET = "shapes_grid"  # the grid recipe, tuned for seed agreement on its test split
TEST_RULE = (
    "ΔmAP50-95 over seeds: a paired t over the seeds both sides ran (a seed effect shared by "
    "the architectures cancels; exact whatever the two spreads), else Welch's statistic with "
    "Hsu's conservative df = min(n) − 1 (valid at any ratio of the spreads); runs without a "
    "seed never pair. p_holm is Holm-adjusted over the comparisons of one recipe, and the "
    "interval shown is the **Holm-adjusted** one (the test's interval at level 1 − α/k, k "
    "the comparison's Holm multiplier): it excludes 0 exactly when p_holm < 0.05. One rule "
    "for every table, Pareto flag and plot: **better/worse** only when that interval excludes "
    "0 (no direction words otherwise), **equivalent** when it lies inside ±{margin:g} pts (a "
    "measured no difference), else **undecided** (not enough seeds: the verdict says how "
    "many would detect {margin:g} pts with 80 % power after Holm, from the two sides' pooled "
    "seed variance)"
)


COST_LATENCY_INTRO = (
    "Per variant the Δ of its costs against the baseline and, per bench method, its latency "
    "in ms with the 95 % CI, its speed-up over the baseline and its Pareto status (the "
    "main table shows the speed-ups of its first two methods).\n\n"
)


def _distinct(values: pd.Series) -> str:
    seen = sorted({str(v) for v in values.dropna() if str(v) != ""})
    return ", ".join(seen) if seen else "not logged"


def conventions_block(
    runs: pd.DataFrame, variants: pd.DataFrame, *, experiment: str, tracking_uri: str,
    baseline: Baseline, margin: float = MARGIN, design: SequentialDesign | None = None,
) -> str:
    """The settings a reader needs before comparing numbers, and the cells with no result."""
    counts = runs["status"].value_counts()
    read = ", ".join(f"{counts.get(s, 0)} {s}" for s in ("completed", "failed", "running"))
    lines = [
        "## Conventions",
        "",
        f"- **Experiment**: `{experiment}` at `{tracking_uri}`; {len(runs)} runs read ({read}).",
        f"- **Dataset**: {_distinct(runs['dataset'])}; **recipe**: {_recipe_names(runs)}; "
        f"**epochs**: {_distinct(runs['epochs'])}; "
        f"**image size**: {_distinct(runs['img_size'])}; **scale**: {_distinct(runs['scale'])}.",
        "- **mAP**: COCO mAP (pycocotools) in points; mAP50-95 averages IoU 0.50:0.95.",
        f"- **FLOPs**: {FLOPS_CONVENTION}.",
        f"- **Quick latency** (`quick/latency_ms`, {QUICK_LATENCY}): median over "
        f"{_distinct(runs['bench_iters'])} timed iterations after "
        f"{_distinct(runs['bench_warmup'])} warm-up, batch {_distinct(runs['latency_batch'])}, "
        f"{_distinct(runs['latency_threads'])} threads, on {_distinct(runs['latency_device'])}"
        f"{_quick_note(variants)}.",
        *bench_method_lines(runs, variants),
        "- **Seeds**: mean ± sample std (ddof=1) over seeds, the newest completed run per seed; "
        "failed runs never enter a mean.",
        f"- **Baseline**: {baseline} of the same recipe (scale, image size, dataset and every "
        "other identity key); ΔmAP in points, Δparams and ΔGFLOPs in %, speed-up = baseline "
        "latency / latency.",
        f"- **Code**: lightyolo {_distinct(runs['lightyolo_version'])}, "
        f"git {_distinct(runs['git_sha'])}{_code_note(runs)}.",
        f"- **Rows**: one per (backbone, neck, operator, head) and recipe (the run's identity minus "
        f"the seed: config minus execution keys, dataset content, weights, code); runs of "
        f"different recipes are never averaged.{_recipes_note(variants)}",
        *_head_recipe_lines(runs),
        f"- **Statistics**: {TEST_RULE.format(margin=margin)}; with one seed on a side the "
        "spread is unknown.",
        *_seeds_lines(variants, design),
        "- **Pareto**: within (dataset, scale, image size; for the quick latency also the "
        "device; a bench method fixes device and threads, its cost interval is the bench CI); "
        "a variant is *dominated* only when another is **better** in mAP50-95 by the rule "
        "above (its pairwise comparison, Holm over every pair of the context) and costs no "
        "more beyond the uncertainty; *undecided* when beaten by the point estimates only; "
        "*front* when nothing beats it even so, on the point estimates: no claim of superiority. "
        "The main table gives one status per cost (GFLOPs, then each bench method it shows).",
        *_split_notes(runs),
    ]
    unfinished = variants[variants["status"] != "completed"]
    partly_failed = runs[
        (runs["status"] == "failed")
        & runs["run_id"].isin(_failed_runs_of_completed(runs, variants))
    ]
    if len(unfinished) or len(partly_failed):
        lines += ["", "### Failed and missing cells", ""]
        heads = shows_heads(variants)
        header = [*coordinate_header(heads), "status", "error"]
        rows = [
            [*coordinates(v, heads), v["status"], short_error(v["error"])] for _, v in unfinished.iterrows()
        ]
        rows += [
            [*coordinates(r, heads), f"seed {r['seed']} failed", short_error(r["error"])]
            for _, r in partly_failed.iterrows()
        ]
        lines.append(markdown_table(header, rows))
    return "\n".join(lines)


def _seeds_lines(variants: pd.DataFrame, design: SequentialDesign | None) -> list[str]:
    """How the seeds were chosen: adaptive (which procedure, what it cost) or fixed."""
    if design is None:
        return []
    trained = int(variants.loc[variants["status"] == "completed", "n_seeds"].sum())
    cells = int((variants["status"] == "completed").sum())
    return [f"- **Seeds: adaptive** (`python -m lightyolo.sweep … seeds=adaptive`): "
            f"{design.describe()}; each row's `procedure` says which look decided it. "
            f"Cells trained: {trained} (a fixed 5 seeds per cell: {5 * cells}; fixed "
            f"{design.cap}: {design.cap * cells})."]


def _quick_note(variants: pd.DataFrame) -> str:
    if bench_latency_methods(variants):
        return "; the bench stage's figures below are the ones to compare"
    return ("; the bench stage has not run on these runs (`python -m lightyolo.bench "
            "experiment=...` measures them isolated and interleaved)")


def bench_method_lines(runs: pd.DataFrame, variants: pd.DataFrame) -> list[str]:
    """One conventions line per bench method, stated in full from its `bench/<method>` tag."""
    methods = bench_latency_methods(variants)
    if not methods:
        return []
    lines = []
    for method in methods:
        column = f"bench/{method}/tag"
        texts = sorted({str(t) for t in runs[column].dropna() if '"unsupported"' not in str(t)}) if column in runs else []
        described = [describe_method(text) for text in texts] or ["method tag not logged"]
        settings = " **or** ".join(described)
        if len(described) > 1:
            settings = f"runs measured with different settings: {settings}"
        state = _machine_state(runs, method)
        lines.append(f"- **Latency `{method}`** (bench stage): {settings}."
                     + (f" Machine state in that run: {state.words()}." if state else ""))
    lines.append(f"- **Bench figures**: per cell the median of the round medians with a 95 % "
                 f"interval that respects the machine state shared by the cells and drifting "
                 f"over rounds ({CI_METHOD}; recomputed from the round medians where a run has "
                 f"them, so runs benched under the older per-round bootstrap get it too); "
                 f"{SEED_COMBINATION}; {SPEEDUP_RULE}.")
    return lines


def _machine_state(runs: pd.DataFrame, method: str) -> SharedState | None:
    """The noise model fitted on the method's round medians of its included runs, when they
    all come from one bench run (one tag, equal round counts)."""
    column = f"bench/{method}/round_medians"
    if column not in runs:
        return None
    used = included_runs(runs)
    lists = [v for v in used[column] if isinstance(v, list)]
    tags = used.loc[used[column].map(lambda v: isinstance(v, list)), f"bench/{method}/tag"]
    if len(lists) < 2 or tags.nunique() != 1 or len({len(v) for v in lists}) != 1:
        return None
    return fit_shared_state(np.array(lists, dtype=float))


def describe_method(tag: str) -> str:
    """A `bench/<method>` tag (JSON) in words; an unreadable tag says so."""
    try:
        m = json.loads(tag)
        return (
            f"{m['runtime']} {m['runtime_version']} on {m['device']} ({m['device_name']}), "
            f"{m['threads']} intra-op thread(s) ({m.get('interop_threads', '?')} inter-op), "
            f"batch {m['batch']}, {m['img']}×{m['img']} px, {m.get('dtype', 'float32')}"
            f"{_quantization(m)}, "
            f"memory format {m['memory_format']}, BatchNorm {m['batchnorm']}; "
            f"{m['rounds']} rounds × ({m['warmup']} warm-up + {m['iters']} timed passes), "
            f"{m['cells_interleaved']} cells interleaved in a shuffled order per round "
            f"(seed {m['seed']}); clock: {m['clock']}; torch {m['torch_version']}, "
            f"onnxruntime {m['onnxruntime_version']}"
        )
    except (ValueError, KeyError, TypeError) as err:
        return f"method tag not readable ({type(err).__name__}: {err})"


def _quantization(method: dict) -> str:
    """" (INT8 by …, calibrated on N train images of D)" for a quantized method, else ""."""
    if "quantization" not in method:
        return ""
    c = method.get("calibration", {})
    return (f" ({method['quantization']}; calibrated on {c.get('images_used', '?')} {c.get('split', '?')} "
            f"images of {c.get('dataset', '?')}, seed {c.get('seed', '?')}, files sha256 "
            f"{str(c.get('files_sha256', '?'))[:12]})")


def _code_note(runs: pd.DataFrame) -> str:
    codes = _distinct(runs["code_identity"])
    note = f"; code identity {codes}" if codes != "not logged" else ""
    kept = int(runs["reuse_across_code"].sum())
    if kept:
        note += (f"; **{kept} run(s) kept across code versions** (reuse_across_code=true): "
                 "their rows may mix code versions")
    return note


def _recipe_names(runs: pd.DataFrame) -> str:
    """The training recipes the runs chose (`train=grid`: conf/train/grid.yaml), or "-" for
    runs from before the train group."""
    names = sorted({str(n) for n in runs.get("recipe_name", pd.Series(dtype=object)).dropna() if n})
    return ", ".join(f"`train={n}`" for n in names) or "-"


def _recipes_note(variants: pd.DataFrame) -> str:
    diffs = sorted({d for d in variants["recipe_diff"].dropna() if d})
    if not diffs:
        return ""
    return " **Several recipes** in one context, named in the `recipe` column: " + "; ".join(
        f"`{d}`" for d in diffs) + "."


def _head_recipe_lines(runs: pd.DataFrame) -> list[str]:
    """With several heads: each head's own loss recipe (collect.head_recipes), under which it
    is compared; nothing when the runs have one head (the loss is then part of the recipe)."""
    if "head_recipe" not in runs or runs["head"].nunique() < 2:
        return []
    per_head = {}
    for head, items in zip(runs["head"], runs["head_recipe"]):
        if isinstance(items, dict) and items:
            per_head.setdefault(head, ", ".join(f"{k}={v}" for k, v in sorted(items.items())))
    if not per_head:
        return ["- **Heads**: compared under one recipe; their loss settings differ by run "
                "(`recipe` column)."]
    named = "; ".join(f"**{head}**: `{items}`" for head, items in sorted(per_head.items()))
    return [f"- **Heads**: each head trains with its own loss (a head's yaml carries it, e.g. "
            f"conf/head/v8.yaml), not counted as a recipe difference: {named}."]


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
        split += "; the best epoch's val mAP is logged apart as `val_best/map50_95`"
    notes = [f"- **Reported split**: {split}."]
    if done["val_is_train"].any():
        notes.append(
            "- **Warning: val is the train set** for "
            f"{_distinct(done.loc[done['val_is_train'], 'dataset'])} (dataset.val = "
            "dataset.train): its mAP measures fitting, not generalisation."
        )
    issues = done["data_issues"].dropna().astype(str)
    if len(issues):
        words = _data_issue_words(issues)
        label = "Warning: data issues" if "skipped" in words else "Data"
        notes.append(f"- **{label}**: {words}.")
    if (done["dataset"].astype(str) == GRID_DATASET).any():
        notes.append(
            f"- **Recipe choice**: the `{GRID_DATASET}` recipe (images, epochs) was chosen so "
            "that seeds agree, judged on the test split these tables report: the seed spreads "
            "shown are those of a recipe picked for small spreads on this very split, so they "
            "may understate what another split or recipe shows.")
    return notes


def _data_issue_words(issues: pd.Series) -> str:
    """The readers' counts in words: an empty label file is an image kept as background (no
    objects), not a skipped file; anything else was skipped."""
    counts: dict[str, int] = {}
    for text in issues:
        try:
            for key, value in json.loads(text).items():
                counts[key] = max(counts.get(key, 0), int(value))
        except (ValueError, TypeError, AttributeError):
            counts[text] = counts.get(text, 0)
    background = {k: v for k, v in counts.items() if k.endswith(EMPTY_LABEL)}
    skipped = {k: v for k, v in counts.items() if not k.endswith(EMPTY_LABEL)}
    parts = []
    if background:
        parts.append("images with an empty label file, kept as background (no objects): "
                     + ", ".join(f"{k.split('/')[0]} {v}" for k, v in sorted(background.items())))
    if skipped:
        parts.append("**files skipped** by the readers: "
                     + ", ".join(f"{k} {v}" if v else k for k, v in sorted(skipped.items())))
    return f"counted in {len(issues)} run(s): " + "; ".join(parts)


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


def flops_latency_section(variants: pd.DataFrame) -> str:
    """Per bench method: how well GFLOPs rank its latencies over the completed variants
    (Spearman's ρ with its p), and the pairs where fewer FLOPs run slower."""
    methods = bench_latency_methods(variants)
    if not methods:
        return ("The bench stage has not measured these runs: no latency to compare GFLOPs "
                "with (run `python -m lightyolo.bench experiment=...`).")
    lines = []
    for method in methods:
        rows = variants[(variants["status"] == "completed") & variants[f"latency_{method}_ms"].notna()]
        gflops = _gflops_at(rows, method)
        rows, gflops = rows[gflops.notna()], gflops[gflops.notna()]
        where = f"over {len(rows)} variant(s), GFLOPs at the method's image size"
        corr = stats.flops_rank_correlation(gflops.to_numpy(), rows[f"latency_{method}_ms"].to_numpy())
        if pd.isna(corr.rho):
            fit = f"not estimable {where} (needs ≥ 3 variants with distinct GFLOPs and latencies)"
        else:
            fit = (f"Spearman ρ = {corr.rho:+.2f} (permutation p = {corr.p_value:.3f}) "
                   f"{where}: {_rho_words(corr)}")
        lines.append(f"- **`{method}`**: GFLOPs vs median latency, {fit}. {_slower_pairs(rows, gflops, method)}")
    return ("How well the FLOP count predicts measured latency, per bench method (rank "
            "correlation, scipy.stats.spearmanr; depthwise and grouped convs have few FLOPs "
            "but low arithmetic intensity, so they can run slower than their FLOPs say).\n\n"
            + "\n".join(lines))


def _gflops_at(rows: pd.DataFrame, method: str) -> pd.Series:
    """Each variant's GFLOPs at the image size the method measured (from its tag's `img`:
    the run's own size → `gflops`, 640 → `gflops_640`), NaN where neither fits."""
    sizes = rows[f"latency_{method}_img"] if f"latency_{method}_img" in rows else pd.Series(
        pd.NA, index=rows.index)
    own = rows["gflops_mean"].where(sizes.isna() | (sizes == rows["img_size"]))
    if "gflops_640_mean" in rows:
        own = own.where(own.notna(), rows["gflops_640_mean"].where(sizes == 640))
    return own.astype(float)


def _rho_words(corr: stats.RankCorrelation) -> str:
    if corr.rho >= 0.8:
        words = "strong agreement: more FLOPs mostly means slower here"
    elif corr.rho >= 0.5:
        words = "moderate agreement: GFLOPs rank latency only roughly here"
    elif corr.rho > -0.5:
        words = "weak: GFLOPs say little about latency here"
    else:
        words = "inverse: more FLOPs tend to run faster here"
    if corr.p_value >= stats.ALPHA:
        words += f" (not significant with {corr.n} variants)"
    return words


def _slower_pairs(rows: pd.DataFrame, gflops: pd.Series, method: str) -> str:
    pairs = stats.fewer_flops_but_slower(
        gflops.to_numpy(), rows[f"latency_{method}_ms"].to_numpy(dtype=float),
        rows[f"latency_{method}_ms_ci_low"].to_numpy(dtype=float),
        rows[f"latency_{method}_ms_ci_high"].to_numpy(dtype=float),
    )
    if not pairs:
        return "No pair where fewer FLOPs run slower."
    names = [_variant_name(r) for _, r in rows.iterrows()]
    g = gflops.to_numpy()
    latency = rows[f"latency_{method}_ms"].to_numpy(dtype=float)
    beyond = [(i, j) for i, j, b in pairs if b]
    within = len(pairs) - len(beyond)
    text = []
    if beyond:
        named = [f"{names[i]} ({g[i]:.3g} GFLOPs, {latency[i]:.2f} ms) vs {names[j]} "
                 f"({g[j]:.3g} GFLOPs, {latency[j]:.2f} ms)" for i, j in beyond[:MAX_PAIRS]]
        more = f" and {len(beyond) - MAX_PAIRS} more" if len(beyond) > MAX_PAIRS else ""
        text.append("Fewer FLOPs but slower beyond the 95 % CIs: " + "; ".join(named) + more + ".")
    if within:
        text.append(f"{within} more pair(s) with fewer FLOPs are slower by the medians only "
                    "(CIs overlap).")
    return " ".join(text)


def _variant_name(row: pd.Series) -> str:
    head = f"/{row['head']}" if row.get("head", DEFAULT_HEAD) != DEFAULT_HEAD else ""
    return f"{row['backbone']}/{row['neck']}/{row['operator']}{head} {row['scale']}@{row['img_size']}"


def comparison_verdict(row: pd.Series) -> str:
    """The variant's ΔmAP50-95 against the baseline, in words (stats.verdict)."""
    if row["is_baseline"]:
        return "baseline"
    if row["status"] != "completed":
        return row["status"]
    if pd.isna(row["delta_map50_95"]):
        return "no completed baseline to compare with"
    return row["verdict"]


def one_factor_tables(variants: pd.DataFrame, baseline: Baseline, margin: float = MARGIN) -> str:
    """One table per factor (backbone, neck, operator, head) and per (scale, img, dataset),
    the other factors held at the baseline, like the ablation tables of the papers."""
    sections = []
    heads = shows_heads(variants)
    for key, group in variants.groupby([*CONTEXT_KEYS, "recipe"], dropna=False, sort=True):
        scale, img_size, dataset = (str(v) for v in key[:3])
        recipe = group["recipe_diff"].iloc[0]
        recipe = f"; {recipe}" if isinstance(recipe, str) and recipe else ""
        for factor in FACTOR_KEYS:
            rows = one_factor_rows(group, factor, baseline)
            if len(rows) < 2:
                continue
            held = ", ".join(f"{k} {v}" for k, v in zip(FACTOR_KEYS, baseline)
                             if k != factor and (k != "head" or heads))
            sections.append(
                f"### Effect of the {factor} ({held}; scale {scale}, img {img_size}, {dataset}"
                f"{recipe})\n\n" + _factor_table(rows, factor)
            )
    if not sections:
        return "No one-factor comparison: no variant shares two factors with the baseline."
    return (f"{TEST_RULE.format(margin=margin)}. The in-run quick latency (wall clock, no "
            "interval) is left out of these comparisons: the bench columns are the ones to "
            "compare.\n\n" + "\n\n".join(sections))


def _factor_table(rows: pd.DataFrame, factor: str) -> str:
    header = [
        factor, "seeds", "params (M)", "Δparams", "GFLOPs", "ΔGFLOPs", "mAP50", "mAP50-95",
        "ΔmAP50-95 (pts) [Holm-adjusted]", "p", "p_holm", "detectable after Holm (pts)",
        "verdict", "procedure",
    ]
    methods = main_table_methods(rows)
    header += [h for m in methods for h in (f"{m} (ms) [95 % CI]", f"speed-up {m} [interval]")]
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
            delta_ci(v),
            p_value(v["p_value"]),
            p_value(v["p_holm"]),
            DASH if pd.isna(v.get("detectable_map50_95")) else f"{v['detectable_map50_95']:.1f}",
            comparison_verdict(v),
            v.get("procedure") or DASH,
            *[cell for m in methods
              for cell in (bench_latency(v, m), v[f"speedup_{m}_verdict"] or DASH)],
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
        analysed, note = group, ""
        if gaps:
            sub = largest_complete_subgrid(group, factors)
            if sub is None:
                sections.append(
                    f"{title}\n\nIncomplete grid and no complete sub-grid of two cells: main "
                    "effects and interactions are not estimated (every combination of the "
                    f"analysed factors needs ≥ 2 completed seeds). Missing: {'; '.join(gaps)}."
                )
                continue
            held_at_baseline = all(references[f] == level for f, level in sub.held.items())
            if len(sub.factors) == 1 and held_at_baseline:
                sections.append(
                    f"{title}\n\nIncomplete grid (missing: {'; '.join(gaps)}). Its largest "
                    f"complete sub-grid, **{sub.describe()}**, is the one-factor table of the "
                    f"{sub.factors[0]} above: read its verdicts there (paired over seeds, no "
                    "common seed spread assumed, which this section's pooled error would)."
                )
                continue
            analysed, factors = sub.select(group), sub.factors
            note = (f"Incomplete grid (missing: {'; '.join(gaps)}). Analysed instead: the "
                    f"largest complete sub-grid, **{sub.describe()}** ({sub.cells} cells); "
                    "its effects hold at the levels it keeps, not over the whole grid.\n\n")
        data = analysed.assign(map50_95=analysed["map50_95"] * POINTS)
        effects = factor_effects(data, factors, "map50_95", references=references)
        sections.append(f"{title}\n\n{note}{effects_markdown(effects)}")
    if not sections:
        return "No factor is swept: nothing to estimate."
    return ("One linear model per grid with every interaction the grid supports (the full "
            "factorial), whose residual is the one error term of all its tests. Main effects: "
            "a level's mean mAP50-95 minus the reference level's, each averaged over the other "
            "factors' levels, with its Holm-adjusted interval (the tables' rule); "
            "interactions: type III F tests with sum-to-zero coding (valid on unbalanced grids), F(term df, error df); p-values Holm-adjusted "
            "within the main effects and within the interactions; a significant interaction "
            "is spelled out as simple effects with 95 % CIs; direction words only for what "
            "is significant after Holm.\n\n"
            + "\n\n".join(sections))


def report_markdown(
    runs: pd.DataFrame, variants: pd.DataFrame, plots: Sequence[Path], *, experiment: str,
    tracking_uri: str, baseline: Baseline, out_dir: Path, margin: float = MARGIN,
    design: SequentialDesign | None = None, deployment: str | None = None,
) -> str:
    """The whole ablation.md; `plots` are embedded relative to `out_dir`."""
    images = "\n\n".join(f"![{p.stem}]({p.relative_to(out_dir).as_posix()})" for p in plots)
    parts = [
        f"# Ablation report: {experiment}",
        conventions_block(
            runs, variants, experiment=experiment, tracking_uri=tracking_uri, baseline=baseline,
            margin=margin, design=design,
        ),
        "## Main table\n\n" + main_table(variants),
        "## Cost and latency\n\n" + COST_LATENCY_INTRO + cost_latency_table(variants),
        "## Tradeoffs\n\n" + (images or "No completed variant with both mAP and cost to plot."),
        "## Do GFLOPs predict latency?\n\n" + flops_latency_section(variants),
        *(["## Deployment: runtimes and precisions\n\n" + deployment] if deployment else []),
        "## One-factor tables\n\n" + one_factor_tables(variants, baseline, margin),
        "## Factor effects\n\n" + factor_effects_section(runs, variants, baseline),
    ]
    return "\n\n".join(parts) + "\n"
