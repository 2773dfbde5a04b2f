"""Markdown for the ablation report: conventions block, main table, one-factor tables.

Renders the frames `aggregate` builds; computes nothing new. mAP is shown in points
(×100 of the COCO fractions the runs log), mean ± sample std over seeds.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path

import pandas as pd

from lightyolo.report.aggregate import POINTS, Baseline, one_factor_rows
from lightyolo.report.collect import CONTEXT_KEYS, FACTOR_KEYS, UNKNOWN

FLOPS_CONVENTION = (
    "2 × multiply-accumulates of the convolutions and linear layers with BatchNorm folded "
    "(thop), plus Involution's aggregation (K²·C·H·W multiply-adds), at the run's image size "
    "(references.md)"
)
SPREAD_RULE = (
    "|ΔmAP| > std(variant) + std(baseline), i.e. the ±1 std bars over seeds do not overlap"
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
        f"- **Baseline**: {baseline} at the same scale, image size and dataset; ΔmAP in "
        "points, Δparams and ΔGFLOPs in %, speed-up = baseline latency / latency.",
        "- **Pareto**: ★ = no other variant of the dataset has ≥ mAP50-95 and ≤ cost "
        "(GFLOPs, or latency) with one strict.",
        f"- **Code**: lightyolo {_distinct(runs['lightyolo_version'])}, "
        f"git {_distinct(runs['git_sha'])}.",
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


def _failed_runs_of_completed(runs: pd.DataFrame, variants: pd.DataFrame) -> set[str]:
    """Failed runs of a seed that never completed, inside a variant that has other seeds."""
    keys = list(FACTOR_KEYS + CONTEXT_KEYS)
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


def main_table(variants: pd.DataFrame) -> str:
    header = [
        "backbone", "neck", "operator", "scale", "img", "dataset", "seeds", "params (M)",
        "GFLOPs", "mAP50", "mAP50-95", "latency (ms)", "FPS", "device", "ΔmAP50-95 (pts)",
        "Δparams", "ΔGFLOPs", "speed-up", "Pareto GFLOPs", "Pareto latency", "note",
    ]
    rows = []
    for _, v in variants.iterrows():
        rows.append([
            *_coordinates(v),
            str(v["n_seeds"]),
            mean_std(v["params_m_mean"], v["params_m_std"], 3),
            mean_std(v["gflops_mean"], v["gflops_std"], 2),
            mean_std(v["map50_mean"], v["map50_std"], 1, POINTS),
            mean_std(v["map50_95_mean"], v["map50_95_std"], 1, POINTS),
            mean_std(v["latency_ms_mean"], v["latency_ms_std"], 2),
            mean_std(v["fps_mean"], v["fps_std"], 1),
            v["latency_device"] or DASH,
            signed(v["delta_map50_95_pts"], 1),
            signed(v["delta_params_pct"], 1, " %"),
            signed(v["delta_gflops_pct"], 1, " %"),
            DASH if pd.isna(v["speedup"]) else f"{v['speedup']:.2f}×",
            "★" if v["pareto_gflops"] else "",
            "★" if v["pareto_latency"] else "",
            _note(v),
        ])
    return markdown_table(header, rows)


def spread_verdict(row: pd.Series) -> str:
    """Whether the variant's ΔmAP50-95 stands out from the seed-to-seed spread."""
    if row["is_baseline"]:
        return "baseline"
    if row["status"] != "completed":
        return row["status"]
    if pd.isna(row["delta_map50_95_pts"]):
        return "no completed baseline to compare with"
    beyond = row["map50_95_beyond_spread"]
    if pd.isna(beyond):
        return "single seed: spread unknown, the Δ may be noise"
    if beyond:
        return "larger than the seed spread"
    return "NOT larger than the seed spread: not distinguishable from the baseline"


def one_factor_tables(variants: pd.DataFrame, baseline: Baseline) -> str:
    """One table per factor (backbone, neck, operator) and per (scale, img, dataset), the
    other two factors held at the baseline, like the ablation tables of the papers."""
    sections = []
    for context, group in variants.groupby(list(CONTEXT_KEYS), dropna=False, sort=True):
        scale, img_size, dataset = (str(v) for v in context)
        for factor in FACTOR_KEYS:
            rows = one_factor_rows(group, factor, baseline)
            if len(rows) < 2:
                continue
            held = ", ".join(f"{k} {v}" for k, v in zip(FACTOR_KEYS, baseline) if k != factor)
            sections.append(
                f"### Effect of the {factor} ({held}; scale {scale}, img {img_size}, {dataset})"
                "\n\n" + _factor_table(rows, factor)
            )
    if not sections:
        return "No one-factor comparison: no variant shares two factors with the baseline."
    return f"ΔmAP counts as larger than the seed spread when {SPREAD_RULE}.\n\n" + "\n\n".join(
        sections
    )


def _factor_table(rows: pd.DataFrame, factor: str) -> str:
    header = [
        factor, "seeds", "params (M)", "Δparams", "GFLOPs", "ΔGFLOPs", "mAP50", "mAP50-95",
        "ΔmAP50-95 (pts)", "latency (ms)", "speed-up", "vs seed spread",
    ]
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
            signed(v["delta_map50_95_pts"], 1),
            mean_std(v["latency_ms_mean"], v["latency_ms_std"], 2),
            DASH if pd.isna(v["speedup"]) else f"{v['speedup']:.2f}×",
            spread_verdict(v),
        ])
    return markdown_table(header, body)


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
    ]
    return "\n\n".join(parts) + "\n"
