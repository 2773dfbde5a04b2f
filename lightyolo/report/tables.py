"""Markdown for the ablation report: conventions block, main table, one-factor tables,
factor effects.

Renders the frames `aggregate` builds (and the factor effects of complete grids); mAP is
shown in points (×100 of the COCO fractions the runs log), mean ± sample std over seeds.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Sequence
from pathlib import Path

import pandas as pd

from lightyolo.deploy.registry import runtime_names
from lightyolo.report import stats
from lightyolo.report.aggregate import (
    PAIRED, POINTS, Baseline, bench_latency_methods, included_runs, one_factor_rows,
)
from lightyolo.report.collect import CONTEXT_KEYS, FACTOR_KEYS, UNKNOWN
from lightyolo.report.factors import effects_markdown, factor_effects, grid_gaps, swept_factors

FLOPS_CONVENTION = (
    "2 × multiply-accumulates of the convolutions and linear layers with BatchNorm folded "
    "(thop), plus Involution's aggregation (K²·C·H·W multiply-adds), at the run's image size "
    "(references.md); GFLOPs@640 is the same count at 640×640 (`gflops_640`), the size papers "
    "quote, where the runs logged it"
)
QUICK_LATENCY = (
    "a **quick figure**: measured inside the training process right after training, "
    "BatchNorm unfused, eager PyTorch"
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
        f"- **Quick latency** (`latency_ms`, {QUICK_LATENCY}): median over "
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
        f"- **Rows**: one per (backbone, neck, operator) and recipe (the run's identity minus "
        f"the seed: config minus execution keys, dataset content, weights, code); runs of "
        f"different recipes are never averaged.{_recipes_note(variants)}",
        f"- **Statistics**: {TEST_RULE}; with one seed on a side the spread is unknown.",
        "- **Pareto**: within (dataset, scale, image size; for the quick latency also the "
        "device; a bench method fixes device and threads, its cost interval is the bench CI); "
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
        lines.append(f"- **Latency `{method}`** (bench stage): {settings}.")
    lines.append(f"- **Bench figures**: per cell the median of the round medians with a 95 % "
                 f"bootstrap CI over rounds; {SEED_COMBINATION}; {SPEEDUP_RULE}.")
    return lines


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
    # Spelled out: a blank reads as "not computed", which is what a missing status means.
    return {"optimal": "★", "undecided": "undecided", "dominated": "dominated"}.get(status, "")


# The main and one-factor tables carry the bench stage's default runtimes at fp32; the other
# deployment runtimes (built-in or plugins) and precisions go to the deployment section, so
# that the main table does not widen with each deployment.
MAIN_TABLE_RUNTIMES = ("torch", "torch_fp16", "onnxruntime")
_METHOD = re.compile(r"^(?P<key>.+)_(cpu|cuda)_t\d+_b\d+_\d+(_cputime)?$")


def is_deployment_method(method: str) -> bool:
    """A method of a runtime other than MAIN_TABLE_RUNTIMES, or at a precision other than fp32."""
    match = _METHOD.match(method)
    if match is None or match["key"] in MAIN_TABLE_RUNTIMES:
        return False
    key = match["key"]
    return key.endswith(("_int8", "_fp16")) or key in runtime_names()


def main_table_methods(variants: pd.DataFrame) -> list[str]:
    return [m for m in bench_latency_methods(variants) if not is_deployment_method(m)]


def main_table(variants: pd.DataFrame) -> str:
    """One row per variant. With bench figures, one column group per method (latency with
    its 95 % CI, speed-up with its CI, Pareto on it) and the in-run latency as the quick
    figure only; without, the quick figure with its FPS, speed-up and Pareto."""
    recipes = bool(variants["recipe_diff"].fillna("").astype(bool).any())
    at_640 = "gflops_640_mean" in variants and bool(variants["gflops_640_mean"].notna().any())
    methods = main_table_methods(variants)
    header = [
        "backbone", "neck", "operator", "scale", "img", "dataset", *(["recipe"] if recipes else []),
        "seeds", "params (M)", "GFLOPs", *(["GFLOPs@640"] if at_640 else []), "mAP50",
        "mAP50-95", "quick latency (ms)",
        *([] if methods else ["FPS", "device"]),
        "ΔmAP50-95 (pts) [95 % CI]", "p_holm", "Δparams", "ΔGFLOPs",
        *([] if methods else ["speed-up"]),
        "Pareto GFLOPs", *([] if methods else ["Pareto latency"]),
    ]
    for method in methods:
        header += [f"{method} (ms) [95 % CI]", f"speed-up {method} [95 % CI]", f"Pareto {method}"]
    header.append("note")
    rows = []
    for _, v in variants.iterrows():
        quick = [] if methods else [mean_std(v["fps_mean"], v["fps_std"], 1), v["latency_device"] or DASH]
        row = [
            *_coordinates(v),
            *([v["recipe_diff"] or DASH] if recipes else []),
            str(v["n_seeds"]),
            mean_std(v["params_m_mean"], v["params_m_std"], 3),
            mean_std(v["gflops_mean"], v["gflops_std"], 2),
            *([mean_std(v["gflops_640_mean"], v["gflops_640_std"], 2)] if at_640 else []),
            mean_std(v["map50_mean"], v["map50_std"], 1, POINTS),
            mean_std(v["map50_95_mean"], v["map50_95_std"], 1, POINTS),
            mean_std(v["latency_ms_mean"], v["latency_ms_std"], 2),
            *quick,
            _delta_ci(v),
            _p(v["p_holm"]),
            signed(v["delta_params_pct"], 1, " %"),
            signed(v["delta_gflops_pct"], 1, " %"),
            *([] if methods else [DASH if pd.isna(v["speedup"]) else f"{v['speedup']:.2f}×"]),
            _pareto(v, "pareto_gflops"),
            *([] if methods else [_pareto(v, "pareto_latency")]),
        ]
        for method in methods:
            row += [bench_latency(v, method), bench_speedup(v, method), _pareto(v, f"pareto_{method}")]
        row.append(_note(v))
        rows.append(row)
    return markdown_table(header, rows)


def bench_latency(row: pd.Series, method: str) -> str:
    """"8.61 [8.52, 8.70]", or "—" when the bench did not measure the variant."""
    median = row.get(f"latency_{method}_ms")
    if median is None or pd.isna(median):
        return DASH
    low, high = row[f"latency_{method}_ms_ci_low"], row[f"latency_{method}_ms_ci_high"]
    return f"{median:.2f}" if pd.isna(low) else f"{median:.2f} [{low:.2f}, {high:.2f}]"


def bench_speedup(row: pd.Series, method: str) -> str:
    """"1.16× [1.12, 1.19]" (paired by round) or "1.16× [1.05, 1.27] (intervals)"."""
    ratio = row.get(f"speedup_{method}")
    if ratio is None or pd.isna(ratio):
        return DASH
    low, high = row[f"speedup_{method}_low"], row[f"speedup_{method}_high"]
    if pd.isna(low):
        return f"{ratio:.2f}× (interval unknown)"
    basis = "" if row[f"speedup_{method}_basis"] == PAIRED else " (from the two CIs)"
    return f"{ratio:.2f}× [{low:.2f}, {high:.2f}]{basis}"


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
    return f"{row['backbone']}/{row['neck']}/{row['operator']} {row['scale']}@{row['img_size']}"


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
        "ΔmAP50-95 (pts) [95 % CI]", "p", "p_holm", "quick latency (ms)", "quick speed-up",
        "verdict",
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
            _delta_ci(v),
            _p(v["p_value"]),
            _p(v["p_holm"]),
            mean_std(v["latency_ms_mean"], v["latency_ms_std"], 2),
            DASH if pd.isna(v["speedup"]) else f"{v['speedup']:.2f}×",
            comparison_verdict(v),
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
    tracking_uri: str, baseline: Baseline, out_dir: Path, deployment: str | None = None,
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
        "## Do GFLOPs predict latency?\n\n" + flops_latency_section(variants),
        *(["## Deployment: runtimes and precisions\n\n" + deployment] if deployment else []),
        "## One-factor tables\n\n" + one_factor_tables(variants, baseline),
        "## Factor effects\n\n" + factor_effects_section(runs, variants, baseline),
    ]
    return "\n\n".join(parts) + "\n"
