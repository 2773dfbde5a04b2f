"""The report's deployment section: each cell per runtime and precision (latency, speed-ups,
mAP after deployment and its drop), rank agreement between runtimes, Pareto fronts per target.

Sources: the bench stage's figures (`bench/<method>/…`, per method one runtime at one
precision on one target: device, threads, batch, image size, clock) and `python -m
lightyolo.deploy`'s (`deploy/<runtime>_<precision>/map50_95`, tags saying how or why
unsupported). Statistics:

- latency: the bench stage's median with its 95 % bootstrap CI over rounds; speed-up over
  the baseline cell on the same method paired by round (aggregate.add_speedups); INT8's (or
  fp16's) speed-up over the same runtime's fp32 paired by round on the same runs
  (fp32 / low-precision time per round, median and bootstrap CI over rounds);
- mAP drop: per run, mAP through the deployment − mAP of PyTorch fp32 measured by deploy on
  the same path (square letterbox); mean over seeds with a 95 % t interval (none for 1 seed);
- rank agreement: Kendall's τ between two methods' per-variant latencies, with a 95 %
  percentile interval from resampling the shared bench rounds (2000 resamples, seeded);
- Pareto: per method, the variants no other beats on both deployed mAP (PyTorch's where not
  deployed) and latency (point estimates).
"""

from __future__ import annotations

import itertools
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats as scipy_stats

from lightyolo.bench.stage import bootstrap_median_ci
from lightyolo.configs import DEFAULT_HEAD
from lightyolo.report.aggregate import bench_latency_methods, included_runs, pareto_optimal
from lightyolo.report.collect import FACTOR_KEYS
from lightyolo.report.stats import mean_interval
from lightyolo.report.main_table import MAIN_TABLE_RUNTIMES
from lightyolo.store import schema

RESAMPLES = 2000
POINTS = 100  # mAP in points
DASH = "—"
REFERENCE = "torch_fp32"  # the deploy key every drop is taken from
VARIANT_COLUMNS = (*FACTOR_KEYS, "recipe")  # one report row: its factors and its recipe
DEPLOYED_PREFIX = schema.metric_column(f"{schema.DEPLOY}/")  # the columns of deploy/<target>/<figure> metrics
INTRO = (
    "Each cell as deployed: per runtime and precision (bench stage, `runtimes=` and `precisions=`) "
    "its latency with the 95 % bootstrap CI over rounds, its speed-up over the baseline cell and "
    "over the same runtime's fp32 (both paired by round), the mAP50-95 measured through that "
    "runtime (`python -m lightyolo.deploy`: square letterbox at the export's size, the same NMS and "
    "pycocotools) and its drop from PyTorch fp32 on the same path (mean over seeds, 95 % t CI). "
    "INT8 is post-training quantization calibrated on training images only (each figure's tag "
    "names the images and the method). Pareto: *front* when no other cell of that runtime and "
    "precision has a higher deployed mAP and a lower latency, on the point estimates (no claim of "
    "superiority, as in the main table). Every number is also in `deployment.csv`."
)


@dataclass(frozen=True)
class Method:
    """A bench method as the deployment section reads it from its tag."""

    name: str
    runtime: str
    precision: str
    target: str  # everything but runtime and precision, in words

    @property
    def deploy_key(self) -> str:
        return f"{self.runtime}_{self.precision}"


def _tag(text: object) -> dict | None:
    try:
        value = json.loads(str(text))
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def _target(tag: dict) -> str:
    return (f"{tag.get('device', '?')}, {tag.get('threads', '?')} thread(s), batch {tag.get('batch', '?')}, "
            f"{tag.get('img', '?')} px, {str(tag.get('clock', '?')).split(' (')[0]}")


def read_methods(raw: pd.DataFrame) -> dict[str, Method]:
    """Every bench method of the raw runs frame (`tags.bench/<method>`), measured or not."""
    methods: dict[str, Method] = {}
    prefix = schema.tag_column(schema.bench_tag(""))
    for column in raw.columns:
        if not column.startswith(prefix):
            continue
        tag = next((t for t in map(_tag, raw[column].dropna()) if t), None)
        if tag and "runtime" in tag:
            name = column[len(prefix):]
            methods[name] = Method(name, tag["runtime"], tag.get("precision", "fp32"), _target(tag))
    return methods


def unsupported_cells(raw: pd.DataFrame, methods: dict[str, Method]) -> dict[tuple[str, str], str]:
    """{(run_id, method): reason} of the pairs the bench stage recorded as unsupported."""
    found = {}
    for name in methods:
        for run_id, text in zip(raw["run_id"], raw[schema.tag_column(schema.bench_tag(name))]):
            tag = _tag(text) if isinstance(text, str) else None
            if tag and tag.get("status") == "unsupported":
                found[(run_id, name)] = tag.get("reason", "unsupported")
    return found


def _variant(row: Mapping[str, str]) -> str:
    """`c3/pan/conv`, the head joined when it is not the default (`c3/pan/conv/v8`), as runs are named."""
    head = row.get("head") or DEFAULT_HEAD
    return "/".join([row["backbone"], row["neck"], row["operator"], *([head] if head != DEFAULT_HEAD else [])])


def _rounds(group: pd.DataFrame, method: str) -> np.ndarray | None:
    """The variant's per-round latency (mean over its runs of one bench run), or None."""
    column = f"bench/{method}/round_medians"
    if column not in group:
        return None
    lists = [np.asarray(v, dtype=float) for v in group[column] if isinstance(v, list) and v]
    if not lists or len({len(v) for v in lists}) != 1:
        return None
    return np.mean(lists, axis=0)


def _bootstrap_median(values: np.ndarray, seed: int = 0) -> tuple[float, float, float]:
    """Median of per-round values with its 95 % percentile bootstrap interval (stage's method)."""
    low, high = bootstrap_median_ci(values, seed) if len(values) >= 2 else (math.nan, math.nan)
    return float(np.median(values)), low, high


def _interval(value: float, low: float, high: float, digits: int, suffix: str = "") -> str:
    if value is None or math.isnan(value):
        return DASH
    text = f"{value:.{digits}f}{suffix}"
    return text if math.isnan(low) else f"{text} [{low:.{digits}f}, {high:.{digits}f}]"


def deployment_rows(runs: pd.DataFrame, variants: pd.DataFrame, raw: pd.DataFrame) -> pd.DataFrame:
    """One row per (variant, method): the numbers of the section's long table."""
    methods = read_methods(raw)
    measured = set(bench_latency_methods(variants))
    unsupported = unsupported_cells(raw, methods)
    used = included_runs(runs).merge(
        raw[["run_id", *[c for c in raw.columns if c.startswith(DEPLOYED_PREFIX)]]], on="run_id", how="left")
    rows = []
    for _, v in variants.iterrows():
        group = used[(used[list(VARIANT_COLUMNS)] == v[list(VARIANT_COLUMNS)]).all(axis=1)]
        if group.empty:
            continue
        for name, method in methods.items():
            row = {"variant": _variant(v), "recipe": v["recipe"], "method": name, "runtime": method.runtime,
                   "precision": method.precision, "target": method.target, "unsupported": ""}
            reasons = {unsupported[(r, name)] for r in group["run_id"] if (r, name) in unsupported}
            if name in measured and not math.isnan(v.get(f"latency_{name}_ms", math.nan)):
                for part in ("", "_ci_low", "_ci_high"):
                    row[f"latency_ms{part}"] = v[f"latency_{name}_ms{part}"]
                for part in ("", "_low", "_high"):
                    row[f"speedup_vs_baseline{part}"] = v[f"speedup_{name}{part}"]
            elif reasons:
                row["unsupported"] = "; ".join(sorted(reasons))
            else:
                continue
            row |= _own_fp32_ratio(group, name, methods)
            row |= _deployed_map(group, method.deploy_key)
            rows.append(row)
    frame = pd.DataFrame(rows)
    if not frame.empty:
        frame["pareto"] = False
        for _, part in frame.groupby("method"):
            deployed = part["map50_95_deployed"] if "map50_95_deployed" in part else pd.Series(np.nan, index=part.index)
            score = deployed.fillna(part["map50_95_pytorch"]).to_numpy(float)
            cost = part.get("latency_ms", pd.Series(np.nan, index=part.index)).to_numpy(float)
            frame.loc[part.index, "pareto"] = pareto_optimal(score, cost)
    return frame


def _own_fp32_ratio(group: pd.DataFrame, name: str, methods: dict[str, Method]) -> dict[str, float]:
    """fp32 time / this method's time per round, same runs and target (module docstring)."""
    method = methods[name]
    twin = next((m for m in methods.values() if m.runtime == method.runtime and m.precision == "fp32"
                 and m.target == method.target), None)
    if method.precision == "fp32" or twin is None:
        return {}
    mine, fp32 = _rounds(group, name), _rounds(group, twin.name)
    if mine is None or fp32 is None or len(mine) != len(fp32):
        return {}
    median, low, high = _bootstrap_median(fp32 / mine)
    return {"speedup_vs_own_fp32": median, "speedup_vs_own_fp32_low": low, "speedup_vs_own_fp32_high": high}


def _deployed_map(group: pd.DataFrame, key: str) -> dict[str, float]:
    """Mean mAP50-95 through `key` and its drop from PyTorch fp32 on the same path."""
    out = {"map50_95_pytorch": float(group["map50_95"].mean())}
    column = schema.metric_column(schema.deploy_metric(key, "map50_95"))
    reference = schema.metric_column(schema.deploy_metric(REFERENCE, "map50_95"))
    if column not in group or group[column].isna().all():
        return out
    out["map50_95_deployed"] = float(group[column].mean())
    out["seeds_deployed"] = int(group[column].notna().sum())
    if reference in group:
        drops = (group[column] - group[reference]).dropna().to_numpy(float)
        if len(drops):
            low, high = mean_interval(list(drops))
            out |= {"map_drop": float(drops.mean()), "map_drop_low": low, "map_drop_high": high}
    return out


def kendall_tau_b(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Kendall's τ-b of each row pair of a and b, (resamples, items) each: scipy's statistic,
    vectorised over the resamples (NaN where a row has no untied pair)."""
    sa = np.sign(a[:, :, None] - a[:, None, :])
    sb = np.sign(b[:, :, None] - b[:, None, :])
    with np.errstate(invalid="ignore", divide="ignore"):
        return (sa * sb).sum(axis=(1, 2)) / np.sqrt((sa**2).sum(axis=(1, 2)) * (sb**2).sum(axis=(1, 2)))


def rank_agreement(runs: pd.DataFrame, variants: pd.DataFrame, raw: pd.DataFrame, seed: int = 0) -> pd.DataFrame:
    """Kendall's τ of the variants' latencies between every two methods of one target, with
    its 95 % interval from resampling rounds (module docstring)."""
    methods = {n: m for n, m in read_methods(raw).items() if n in set(bench_latency_methods(variants))}
    used = included_runs(runs)
    per_variant = {}
    for key, group in used.groupby(list(VARIANT_COLUMNS)):
        per_variant[_variant(dict(zip(VARIANT_COLUMNS, key)))] = {name: _rounds(group, name) for name in methods}
    rows = []
    for a, b in itertools.combinations(methods, 2):
        if methods[a].target != methods[b].target:
            continue
        both = {v: (r[a], r[b]) for v, r in per_variant.items() if r[a] is not None and r[b] is not None}
        lengths = {len(x) for pair in both.values() for x in pair}
        if len(both) < 3 or len(lengths) != 1:
            continue
        ra = np.stack([pair[0] for pair in both.values()])
        rb = np.stack([pair[1] for pair in both.values()])
        tau = scipy_stats.kendalltau(np.median(ra, axis=1), np.median(rb, axis=1)).statistic
        picks = np.random.default_rng(seed).integers(0, ra.shape[1], (RESAMPLES, ra.shape[1]))
        draws = kendall_tau_b(np.median(ra[:, picks], axis=2).T, np.median(rb[:, picks], axis=2).T)
        low, high = np.nanpercentile(draws, [2.5, 97.5])
        rows.append({"method_a": a, "method_b": b, "variants": len(both), "tau": float(tau),
                     "tau_low": float(low), "tau_high": float(high)})
    return pd.DataFrame(rows)


def deployment_markdown(rows: pd.DataFrame, ranks: pd.DataFrame, methods: dict[str, Method], baseline: str) -> str:
    """The section's text, tables and plain-words findings."""
    if rows.empty:
        return ("No deployment figures: run `python -m lightyolo.bench experiment=... "
                "runtimes=[torch,onnxruntime,openvino,ncnn] precisions=[fp32,int8]` and "
                "`python -m lightyolo.deploy experiment=...` (docs/deployment.md).")
    parts = [INTRO]
    header = ["variant", "runtime", "precision", "latency ms [95 % CI]", f"speed-up vs {baseline} [95 % CI]",
              "vs own fp32 [95 % CI]", "mAP50-95 deployed", "drop vs PyTorch fp32 (pts) [95 % CI]", "Pareto (point estimates)"]
    for target, part in rows.groupby("target", sort=False):
        lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        for _, r in part.iterrows():
            if r["unsupported"]:
                cells = [r["variant"], r["runtime"], r["precision"], f"unsupported: {r['unsupported']}"] + [DASH] * 5
            else:
                cells = [
                    r["variant"], r["runtime"], r["precision"],
                    _interval(r["latency_ms"], r["latency_ms_ci_low"], r["latency_ms_ci_high"], 2),
                    _interval(r.get("speedup_vs_baseline", math.nan), r.get("speedup_vs_baseline_low", math.nan),
                              r.get("speedup_vs_baseline_high", math.nan), 2, "×"),
                    _interval(r.get("speedup_vs_own_fp32", math.nan), r.get("speedup_vs_own_fp32_low", math.nan),
                              r.get("speedup_vs_own_fp32_high", math.nan), 2, "×"),
                    DASH if pd.isna(r.get("map50_95_deployed", math.nan)) else f"{POINTS * r['map50_95_deployed']:.1f}",
                    _interval(POINTS * r.get("map_drop", math.nan), POINTS * r.get("map_drop_low", math.nan),
                              POINTS * r.get("map_drop_high", math.nan), 2),
                    "front" if r["pareto"] else "",
                ]
            lines.append("| " + " | ".join(str(c) for c in cells) + " |")
        parts.append(f"### Target: {target}\n\n" + "\n".join(lines))
    if not ranks.empty:
        lines = ["| method A | method B | variants | Kendall τ [95 % CI over rounds] |", "|---|---|---|---|"]
        for _, r in ranks.iterrows():
            lines.append(f"| {r['method_a']} | {r['method_b']} | {r['variants']} | "
                         f"{r['tau']:+.2f} [{r['tau_low']:+.2f}, {r['tau_high']:+.2f}] |")
        parts.append("### Do runtimes agree on which cell is fastest?\n\n" + "\n".join(lines))
    parts.append("### In plain words\n\n" + findings(rows, ranks, methods))
    return "\n\n".join(parts)


def findings(rows: pd.DataFrame, ranks: pd.DataFrame, methods: dict[str, Method]) -> str:
    """Which runtime changes the ranking most, and which block survives INT8."""
    said = []
    if not ranks.empty:
        worst = ranks.loc[ranks["tau"].idxmin()]
        a, b = methods[worst["method_a"]], methods[worst["method_b"]]
        certain = "beyond round-to-round noise" if worst["tau_high"] < 1 else "within round-to-round noise"
        said.append(f"- The ranking changes most between {a.runtime} {a.precision} and {b.runtime} {b.precision}: "
                    f"τ = {worst['tau']:+.2f} [{worst['tau_low']:+.2f}, {worst['tau_high']:+.2f}] over "
                    f"{worst['variants']} cells ({certain}); τ = 1 would be the same order.")
    int8 = rows[(rows["precision"] == "int8") & rows.get("map_drop", pd.Series(dtype=float)).notna()] \
        if "map_drop" in rows else rows.iloc[0:0]
    for runtime, part in int8.groupby("runtime"):
        part = part.drop_duplicates("variant")
        best, worst = part.loc[part["map_drop"].idxmax()], part.loc[part["map_drop"].idxmin()]
        said.append(f"- INT8 in {runtime}: {best['variant']} survives best ({POINTS * best['map_drop']:+.2f} pts "
                    f"mAP50-95 vs PyTorch fp32), {worst['variant']} loses most ({POINTS * worst['map_drop']:+.2f} pts).")
    faster = rows[rows.get("speedup_vs_own_fp32", pd.Series(dtype=float)).notna()] if "speedup_vs_own_fp32" in rows else rows.iloc[0:0]
    for _, r in faster.iterrows():
        if r["speedup_vs_own_fp32_high"] < 1:
            said.append(f"- {r['variant']} in {r['runtime']} {r['precision']} is *slower* than in fp32 "
                        f"({r['speedup_vs_own_fp32']:.2f}× [{r['speedup_vs_own_fp32_low']:.2f}, {r['speedup_vs_own_fp32_high']:.2f}]).")
    return "\n".join(said) or "Too few deployed cells to compare."


def write_deployment(runs: pd.DataFrame, variants: pd.DataFrame, raw: pd.DataFrame, baseline: str,
                     directory: Path) -> tuple[str, list[Path]]:
    """The section's markdown, and its CSV files (`deployment.csv`, `deployment_rank_agreement.csv`);
    ("", []) when nothing was deployed beyond the main table's torch and ONNX Runtime at fp32."""
    deployed = any(c.startswith(DEPLOYED_PREFIX) for c in raw.columns) or any(
        m.runtime not in MAIN_TABLE_RUNTIMES or m.precision != "fp32" for m in read_methods(raw).values())
    if not deployed:
        return "", []
    rows = deployment_rows(runs, variants, raw)
    ranks = rank_agreement(runs, variants, raw) if not rows.empty else pd.DataFrame()
    files = []
    if not rows.empty:
        files.append(directory / "deployment.csv")
        rows.to_csv(files[-1], index=False)
    if not ranks.empty:
        files.append(directory / "deployment_rank_agreement.csv")
        ranks.to_csv(files[-1], index=False)
    return deployment_markdown(rows, ranks, read_methods(raw), baseline), files
