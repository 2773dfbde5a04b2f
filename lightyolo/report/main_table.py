"""The report's main table (one row per variant, at most 12 columns) and the wide
cost-and-latency table behind it.

The main table carries what a reader decides on: accuracy with its Holm-adjusted Δ and
decision, the cost, and the speed-up over the baseline on at most two bench methods. Every
latency in ms, the Δ% of the costs and the Pareto status per cost go to the cost-and-latency
section; the deployment runtimes and precisions to the deployment section.
"""

from __future__ import annotations

import re

import pandas as pd

from lightyolo.deploy.registry import runtime_names
from lightyolo.report.aggregate import POINTS, bench_latency_methods
from lightyolo.report.cells import (
    DASH, bench_latency, bench_speedup, decision, delta_ci, markdown_table, mean_std, pareto,
    row_note, signed, variant_label, varying_context,
)

MAX_SPEEDUP_COLUMNS = 2  # bench methods whose speed-up the main table shows

# The main and one-factor tables carry the bench stage's default runtimes at fp32; the other
# deployment runtimes (built-in or plugins) and precisions go to the deployment section, so
# that no table widens with each deployment.
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


def short_method_names(methods: list[str]) -> dict[str, str]:
    """Each method by its runtime ("onnxruntime") where that names it alone, else in full;
    the conventions block states every method in full."""
    keys = {m: (match["key"] if (match := _METHOD.match(m)) else m) for m in methods}
    return {m: k if list(keys.values()).count(k) == 1 else m for m, k in keys.items()}


def main_table(variants: pd.DataFrame) -> str:
    """One row per variant: accuracy, cost, the speed-up on the first MAX_SPEEDUP_COLUMNS
    bench methods (or the wall-clock quick latency when nothing was benched), one Pareto
    column with a status per cost."""
    methods = main_table_methods(variants)[:MAX_SPEEDUP_COLUMNS]
    names = short_method_names(methods)
    context = varying_context(variants)
    costs = ["GFLOPs", *(names[m] for m in methods)] if methods else ["GFLOPs", "quick latency"]
    flags = ["pareto_gflops", *(f"pareto_{m}" for m in methods)] if methods else ["pareto_gflops", "pareto_latency"]
    header = [
        "variant", "seeds", "params (M)", "GFLOPs", "mAP50", "mAP50-95",
        "ΔmAP50-95 (pts) [Holm-adjusted]", "decision",
        *([f"speed-up {names[m]} [95 % CI]" for m in methods] or ["quick latency (ms, wall clock)"]),
        f"Pareto ({' · '.join(costs)})", "note",
    ]
    rows = []
    for _, v in variants.iterrows():
        rows.append([
            variant_label(v, context),
            str(v["n_seeds"]),
            mean_std(v["params_m_mean"], v["params_m_std"], 3),
            mean_std(v["gflops_mean"], v["gflops_std"], 2),
            mean_std(v["map50_mean"], v["map50_std"], 1, POINTS),
            mean_std(v["map50_95_mean"], v["map50_95_std"], 1, POINTS),
            delta_ci(v),
            decision(v, with_p=True),
            *([bench_speedup(v, m) for m in methods]
              or [mean_std(v["latency_ms_mean"], v["latency_ms_std"], 2)]),
            " · ".join(pareto(v, f) or DASH for f in flags),
            row_note(v),
        ])
    return markdown_table(header, rows)


def cost_latency_table(variants: pd.DataFrame) -> str:
    """The wide table: per variant the Δ of its costs, GFLOPs at 640, the quick latency, and
    per bench method its latency with the 95 % CI, speed-up and Pareto status."""
    methods = main_table_methods(variants)
    context = varying_context(variants)
    at_640 = "gflops_640_mean" in variants and bool(variants["gflops_640_mean"].notna().any())
    header = [
        "variant", "Δparams", "ΔGFLOPs", *(["GFLOPs@640"] if at_640 else []),
        "quick latency (ms, wall clock)", *([] if methods else ["FPS (wall clock)", "device"]),
        "Pareto GFLOPs", *([] if methods else ["Pareto quick latency"]),
    ]
    for method in methods:
        header += [f"{method} (ms) [95 % CI]", f"speed-up {method} [95 % CI]", f"Pareto {method}"]
    rows = []
    for _, v in variants.iterrows():
        row = [
            variant_label(v, context),
            signed(v["delta_params_pct"], 1, " %"),
            signed(v["delta_gflops_pct"], 1, " %"),
            *([mean_std(v["gflops_640_mean"], v["gflops_640_std"], 2)] if at_640 else []),
            mean_std(v["latency_ms_mean"], v["latency_ms_std"], 2),
            *([] if methods else [mean_std(v["fps_mean"], v["fps_std"], 1), v["latency_device"] or DASH]),
            pareto(v, "pareto_gflops"),
            *([] if methods else [pareto(v, "pareto_latency")]),
        ]
        for method in methods:
            row += [bench_latency(v, method), bench_speedup(v, method), pareto(v, f"pareto_{method}")]
        rows.append(row)
    return markdown_table(header, rows)
