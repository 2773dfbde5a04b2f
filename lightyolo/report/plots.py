"""Tradeoff plots: mAP50-95 against GFLOPs and against latency, one PNG each per dataset.

Latency is the bench stage's where it ran: one `map_vs_latency_<method>.png` per method, x
error bars its 95 % CI; without bench figures, the in-run quick figure (`map_vs_latency.png`,
labelled so, ±1 std over seeds).
Every completed variant is a labelled point, its y error bar the tables' Holm-adjusted
interval of its Δ mAP50-95 against the baseline (placed at the baseline's mean; none on the
baseline itself), coloured by its Pareto status under the report's one rule (dominated
beyond the uncertainty, undecided, or on the front by the point estimates); the front by
the point estimates (`aggregate.pareto_optimal`) is drawn as the staircase.
mAP is in points on the y axis.
Uses matplotlib's object API on the Agg canvas, so no display and no global backend switch.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from lightyolo.configs import DEFAULT_HEAD
from lightyolo.report.aggregate import POINTS, bench_latency_methods

# cost column → (file stem, axis label, pareto flag column)
COSTS: dict[str, tuple[str, str, str]] = {
    "gflops": ("map_vs_gflops", "GFLOPs", "pareto_gflops"),
    "latency_ms": ("map_vs_latency", "latency (ms, median)", "pareto_latency"),
}


def tradeoff_plots(variants: pd.DataFrame, out_dir: Path) -> list[Path]:
    """Writes the PNGs for every dataset (file names get the dataset when there are several)
    and returns their paths; variants with no mAP or no cost are left out."""
    paths = []
    datasets = sorted(variants["dataset"].dropna().astype(str).unique())
    for dataset in datasets:
        rows = variants[(variants["dataset"] == dataset) & (variants["status"] == "completed")]
        suffix = "" if len(datasets) == 1 else "_" + re.sub(r"[^A-Za-z0-9._-]", "_", dataset)
        for cost, (stem, label, flag) in _costs(variants).items():
            plotted = rows[rows["map50_95_mean"].notna() & rows[_value(cost)].notna()]
            if plotted.empty:
                continue
            path = out_dir / f"{stem}{suffix}.png"
            title = f"{dataset}: mAP50-95 vs {label}{_device_note(plotted, cost)}"
            _save(_tradeoff_figure(plotted, cost, label, flag, title), path)
            paths.append(path)
    return paths


def _costs(variants: pd.DataFrame) -> dict[str, tuple[str, str, str]]:
    """GFLOPs, then each bench method's latency, or the quick figure when the bench has not run."""
    methods = bench_latency_methods(variants)
    if not methods:
        stem, label, flag = COSTS["latency_ms"]
        return {"gflops": COSTS["gflops"], "latency_ms": (stem, f"{label}, quick figure", flag)}
    costs = {"gflops": COSTS["gflops"]}
    for method in methods:
        costs[f"latency_{method}_ms"] = (f"map_vs_latency_{method}", f"bench latency (ms), {method}",
                                          f"pareto_{method}")
    return costs


def _value(cost: str) -> str:
    """The column holding a cost's point value: `<metric>_mean`, or a bench latency itself."""
    return f"{cost}_mean" if cost in COSTS else cost


def _cost_errors(rows: pd.DataFrame, cost: str) -> tuple[np.ndarray, str]:
    """x error bars and what they are: ±1 std over seeds, or the bench's 95 % CI."""
    if cost in COSTS:
        return np.nan_to_num(rows[f"{cost}_std"].to_numpy(dtype=float)), "x: ±1 std over seeds"
    x = rows[cost].to_numpy(dtype=float)
    below = np.nan_to_num(x - rows[f"{cost}_ci_low"].to_numpy(dtype=float))
    above = np.nan_to_num(rows[f"{cost}_ci_high"].to_numpy(dtype=float) - x)
    return np.vstack([below, above]), "x: 95 % CI of the bench median"


def _score_errors(rows: pd.DataFrame) -> np.ndarray:
    """y error bars: the Holm-adjusted interval of Δ (points) around each variant's mean,
    0 where there is none (the baseline, one seed)."""
    if "delta_map50_95_adj_low" not in rows:
        return np.zeros((2, len(rows)))
    delta = rows["delta_map50_95"].to_numpy(dtype=float)
    below = np.nan_to_num(delta - rows["delta_map50_95_adj_low"].to_numpy(dtype=float))
    above = np.nan_to_num(rows["delta_map50_95_adj_high"].to_numpy(dtype=float) - delta)
    return np.vstack([below, above])


def point_labels(rows: pd.DataFrame) -> list[str]:
    """backbone/neck/operator (/head when not the default), plus scale@img_size when the plot mixes several."""
    mixed = rows[["scale", "img_size"]].astype(str).drop_duplicates().shape[0] > 1
    labels = []
    for _, row in rows.iterrows():
        label = f"{row['backbone']}/{row['neck']}/{row['operator']}"
        label += f"/{row['head']}" if row.get("head", DEFAULT_HEAD) != DEFAULT_HEAD else ""
        label = f"{label} {row['scale']}@{row['img_size']}" if mixed else label
        recipe = row.get("recipe_diff", "")
        labels.append(f"{label} ({recipe})" if isinstance(recipe, str) and recipe else label)
    return labels


def _tradeoff_figure(rows: pd.DataFrame, cost: str, label: str, flag: str, title: str) -> Figure:
    x = rows[_value(cost)].to_numpy(dtype=float)
    y = rows["map50_95_mean"].to_numpy(dtype=float) * POINTS
    xerr, xerr_note = _cost_errors(rows, cost)
    yerr = _score_errors(rows)
    optimal = rows[flag].to_numpy(dtype=bool)
    status = (rows[f"{flag}_status"].to_numpy(dtype=object) if f"{flag}_status" in rows
              else np.where(optimal, "optimal", "dominated"))
    undecided = status == "undecided"
    dominated = ~optimal & ~undecided

    figure = Figure(figsize=(7.5, 5.0), dpi=120)
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    for mask, color, ecolor, name in (
        (dominated, "tab:gray", "darkgray", "dominated beyond the uncertainty"),
        (undecided, "tab:orange", "navajowhite", "undecided (within the uncertainty)"),
        (optimal, "tab:red", "lightcoral", "Pareto front (point estimates)"),
    ):
        if mask.any():
            axes.errorbar(x[mask], y[mask], xerr=xerr[..., mask], yerr=yerr[:, mask], fmt="o",
                          color=color, ecolor=ecolor, capsize=3, label=name)
    order = np.argsort(x[optimal])
    # A staircase: each optimal point holds its mAP until a costlier one improves on it.
    axes.step(x[optimal][order], y[optimal][order], where="post", color="tab:red",
              linewidth=1, alpha=0.7, label="Pareto front")
    for xi, yi, text in zip(x, y, point_labels(rows)):
        axes.annotate(text, (xi, yi), textcoords="offset points", xytext=(5, 4), fontsize=8)
    axes.set_xlabel(label)
    axes.set_ylabel("mAP50-95 (points, ×100 of COCO's fraction)")
    axes.set_title(title + f"\nerror bars: y Holm-adjusted interval of Δ vs the baseline; "
                   f"{xerr_note}", fontsize=10)
    axes.grid(True, alpha=0.3)
    axes.legend(fontsize=8, loc="best")
    axes.margins(x=0.15, y=0.15)
    figure.tight_layout()
    return figure


def _device_note(rows: pd.DataFrame, cost: str) -> str:
    if cost != "latency_ms":
        return ""
    devices = sorted({d for d in rows["latency_device"].dropna().astype(str) if d})
    return f" on {', '.join(devices)}" if devices else ""


def _save(figure: Figure, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path)
