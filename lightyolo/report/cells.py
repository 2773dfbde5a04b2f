"""How one figure is written in a report table cell, shared by every table of the report."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import pandas as pd

from lightyolo.configs import DEFAULT_HEAD
from lightyolo.report.aggregate import PAIRED
from lightyolo.report.collect import UNKNOWN

DASH = "—"
ERROR_CHARS = 120

# A Pareto status in words. A blank reads as "not computed", which is what no status means;
# "front" is on the point estimates only (the conventions block says so).
PARETO_WORDS = {"optimal": "front", "undecided": "undecided", "dominated": "dominated"}


def markdown_table(header: Sequence[str], rows: Iterable[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(_escaped(value) for value in row) + " |" for row in rows]
    return "\n".join(lines)


def _escaped(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def mean_std(mean: float, std: float, digits: int, scale: float = 1.0) -> str:
    """"28.1 ± 0.4", or "28.1" for a single seed, or "—" when nothing was measured."""
    if pd.isna(mean):
        return DASH
    text = f"{mean * scale:.{digits}f}"
    return text if pd.isna(std) else f"{text} ± {std * scale:.{digits}f}"


def signed(value: float, digits: int, suffix: str = "") -> str:
    return DASH if pd.isna(value) else f"{value:+.{digits}f}{suffix}"


def p_value(value: float) -> str:
    return DASH if pd.isna(value) else f"{value:.3f}"


def short_error(error: object) -> str:
    """The last line of an error (a traceback's exception line), cut to ERROR_CHARS."""
    if pd.isna(error) or not str(error).strip():
        return ""
    text = str(error).strip().splitlines()[-1]
    return text if len(text) <= ERROR_CHARS else text[: ERROR_CHARS - 1] + "…"


def shows_heads(variants: pd.DataFrame) -> bool:
    """Tables name the head once a variant has a head other than the default."""
    return "head" in variants and bool((variants["head"] != DEFAULT_HEAD).any())


def coordinate_header(heads: bool) -> list[str]:
    return ["backbone", "neck", "operator", *(["head"] if heads else []), "scale", "img", "dataset"]


def coordinates(row: pd.Series, heads: bool = False) -> list[str]:
    keys = ("backbone", "neck", "operator", *(("head",) if heads else ()), "scale", "img_size", "dataset")
    return [UNKNOWN if pd.isna(row[k]) else str(row[k]) for k in keys]


def variant_label(row: pd.Series, context: Sequence[str] = ()) -> str:
    """"ghost/pan/conv", "c3/pan/conv/v8" for a non-default head, followed by the `context`
    keys (scale, img_size, dataset, recipe_diff) that tell this row from the others."""
    head = row.get("head", DEFAULT_HEAD)
    factors = [row["backbone"], row["neck"], row["operator"],
               *([head] if isinstance(head, str) and head != DEFAULT_HEAD else [])]
    label = "/".join(UNKNOWN if pd.isna(v) else str(v) for v in factors)
    extra = [str(row[k]) for k in context if not pd.isna(row.get(k)) and str(row[k])]
    return " · ".join([label, *extra])


def varying_context(variants: pd.DataFrame) -> list[str]:
    """The context keys whose value differs between the rows (the others are in the
    conventions block)."""
    keys = [k for k in ("scale", "img_size", "dataset") if variants[k].astype(str).nunique() > 1]
    recipes = "recipe_diff" in variants and bool(variants["recipe_diff"].fillna("").astype(bool).any())
    return keys + (["recipe_diff"] if recipes else [])


def row_note(row: pd.Series) -> str:
    if row["status"] == "failed":
        return f"**failed**: {short_error(row['error'])}"
    if row["status"] == "missing":
        return "**missing** (no run)"
    if row["status"] == "running":
        return "**running** (no final status)"
    note = "baseline" if row.get("is_baseline", False) else ""
    if row["n_failed"]:
        note = ", ".join(filter(None, [note, f"{row['n_failed']} seed(s) failed"]))
    return note


def delta_ci(row: pd.Series, metric: str = "map50_95") -> str:
    """"-2.0 [-3.1, -0.9]" with the Holm-adjusted interval (the one rule's), or the Δ alone
    when its interval is unknown."""
    delta = signed(row[f"delta_{metric}"], 1)
    low, high = row.get(f"delta_{metric}_adj_low"), row.get(f"delta_{metric}_adj_high")
    if delta == DASH or low is None or pd.isna(low) or pd.isna(high):
        return delta
    return f"{delta} [{low:+.1f}, {high:+.1f}]"


def decision(row: pd.Series, with_p: bool = False) -> str:
    """The row's decision ("better", "undecided", …), with its p_holm when `with_p`."""
    if row.get("is_baseline", False):
        return DASH
    words = str(row.get("decision") or DASH)
    p = row.get("p_holm")
    return f"{words} (p_holm {p:.3f})" if with_p and p is not None and not pd.isna(p) else words


def pareto(row: pd.Series, flag: str) -> str:
    return PARETO_WORDS.get(row.get(f"{flag}_status", ""), "")


def bench_latency(row: pd.Series, method: str) -> str:
    """"8.61 [8.52, 8.70]", or "—" when the bench did not measure the variant."""
    median = row.get(f"latency_{method}_ms")
    if median is None or pd.isna(median):
        return DASH
    low, high = row[f"latency_{method}_ms_ci_low"], row[f"latency_{method}_ms_ci_high"]
    return f"{median:.2f}" if pd.isna(low) else f"{median:.2f} [{low:.2f}, {high:.2f}]"


def bench_speedup(row: pd.Series, method: str) -> str:
    """"1.16× [1.12, 1.19]" (paired by round) or "1.16× [1.05, 1.27] (from the two CIs)"."""
    ratio = row.get(f"speedup_{method}")
    if ratio is None or pd.isna(ratio):
        return DASH
    low, high = row[f"speedup_{method}_low"], row[f"speedup_{method}_high"]
    if pd.isna(low):
        return f"{ratio:.2f}× (interval unknown)"
    basis = "" if row[f"speedup_{method}_basis"] == PAIRED else " (from the two CIs)"
    return f"{ratio:.2f}× [{low:.2f}, {high:.2f}]{basis}"
