"""MLflow runs → one tidy row per run, with the grid coordinates the report groups by.

Reads what docs/mlflow.md promises (tags `backbone`/`neck`/`operator`/`head`/
`dataset`/`seed`/`status`/`error`; a run from before the head group has YOLOv5's head, `v5`, params `model.scale` and `train.img_size`, the final
metrics) out of `Store.runs_frame`, drops the runs that are no cell — the report's own
(tag `kind=report`) and the sweeps' parent runs (`kind=sweep`) — and settles each run's status: the `status` tag when it is final, else MLflow's own FAILED /
KILLED, else "running" (a run still going, or cut off, has no final status).
"""

from __future__ import annotations

import hashlib
import itertools
import json
import sys
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

from lightyolo import identity
from lightyolo.store import schema
from lightyolo.store.client import Store
from lightyolo.store.health import StoreUnavailable, require_store
from lightyolo.store.locks import sqlite_path
from lightyolo.configs import DEFAULT_HEAD

# The coordinates of a variant: one row of the main table per distinct value.
VARIANT_KEYS: tuple[str, ...] = ("backbone", "neck", "operator", "head", "scale", "img_size", "dataset")
FACTOR_KEYS: tuple[str, ...] = ("backbone", "neck", "operator", "head")
# Recipe keys that belong to the head when heads are compared: the head chooses its loss
# (conf/head/v8.yaml carries its gains), so each head is compared under its own loss recipe.
HEAD_RECIPE_PREFIX = "train.loss."
CONTEXT_KEYS: tuple[str, ...] = ("scale", "img_size", "dataset")

# Final metrics (docs/design.md); the report aggregates every one that a run logged.
FINAL_METRICS: tuple[str, ...] = (
    "map50",
    "map50_95",
    "map_small",
    "map_medium",
    "map_large",
    "params_m",
    "params",
    "gflops",
    "gflops_640",
    "latency_ms",
    "latency_p90_ms",
    "fps",
    "train_seconds",
    "train_images_per_s",
)

# Per-run context the conventions block and runs.csv show: column → candidate sources.
RUN_FIELDS = schema.RUN_FIELD_SOURCES

# Identity parts logged as tags (identity.py), and what a row's recipe calls them.
FINGERPRINT_TAGS: dict[str, str] = {
    schema.tag_column(schema.DATASET_FINGERPRINT_TAG): "dataset content",
    schema.tag_column(schema.WEIGHTS_DIGEST_TAG): "weights content",
}
CODE_ITEM = "code"
BENCH_PARTS = schema.BENCH_PARTS  # the bench stage's per-cell latency summary

UNKNOWN = "-"  # shown for a coordinate a run did not log
NOT_CELLS = (schema.REPORT_KIND, schema.SWEEP_KIND)  # `kind` tags of runs that trained nothing
FINAL_STATUSES = (schema.COMPLETED, schema.FAILED)


class ReportError(Exception):
    """A condition the report explains in one line (no store, no runs, bad argument)."""


class UsageError(ReportError):
    """A bad command-line argument (exit status 2, like argparse)."""


def read_runs(tracking_uri: str, experiment: str) -> pd.DataFrame:
    """The runs of `experiment` as `runs_table` rows; raises ReportError when unreadable."""
    try:
        _require_store(tracking_uri)
        raw = Store(tracking_uri).runs_frame(experiment)
    except ValueError as err:
        raise ReportError(str(err)) from err
    except Exception as err:  # MLflow's errors (a server that does not answer), unimported here
        raise _unreadable(tracking_uri, err) from err
    return with_round_medians(runs_table(raw), tracking_uri)


def newest_experiment(tracking_uri: str) -> str:
    """The most recently created experiment of the store; ReportError when there is none."""
    try:
        _require_store(tracking_uri)  # missing, empty or damaged: one line, never created
    except ValueError as err:
        raise ReportError(str(err)) from err
    try:
        names = Store(tracking_uri).experiment_names()
    except Exception as err:  # as in read_runs
        raise _unreadable(tracking_uri, err) from err
    if not names:
        raise ReportError(f"no MLflow experiments at {tracking_uri}")
    return names[0]


def _require_store(tracking_uri: str) -> None:
    """`store.health.require_store`; a server that does not answer reads as `_unreadable`."""
    try:
        require_store(tracking_uri)
    except StoreUnavailable as err:
        if sqlite_path(tracking_uri) is not None:
            raise
        raise _unreadable(tracking_uri, err) from err


def _unreadable(tracking_uri: str, err: Exception) -> ReportError:
    """One line for a store that cannot be read (e.g. a tracking server that is down: MLflow
    retries for minutes first, unless MLFLOW_HTTP_REQUEST_MAX_RETRIES says otherwise)."""
    first = str(err).splitlines()[0] if str(err) else type(err).__name__
    return ReportError(f"cannot read the MLflow store at {tracking_uri}: {first[:300]}")


def runs_table(raw: pd.DataFrame) -> pd.DataFrame:
    """`Store.runs_frame` output → run_id, run_name, start_time, status, the RUN_FIELDS
    columns, one float column per final metric (NaN where not logged), `recipe_items` (dict)
    and `recipe` (its digest: runs of one report row share it), `head_recipe` (the loss items
    a head brings when heads are compared, `head_recipes`), `val_is_train`,
    `requested_cells` (`sweep_cells` of the run's sweep; empty outside a known sweep); report
    and sweep runs dropped."""
    if raw.empty:
        columns = ["run_id", "run_name", "start_time", "status", *RUN_FIELDS, *FINAL_METRICS,
                   "recipe_items", "recipe", "head_recipe", "val_is_train", "requested_cells"]
        return pd.DataFrame(columns=columns)
    raw = raw.reset_index(drop=True)
    kind = schema.tag_column(schema.KIND_TAG)
    requested = sweep_cells(raw)
    if kind in raw:
        raw = raw[~raw[kind].fillna("").isin(NOT_CELLS)].reset_index(drop=True)
    runs = pd.DataFrame(
        {
            "run_id": raw["run_id"],
            "run_name": raw["run_name"],
            "start_time": raw["start_time"],
            "status": [_status(row) for _, row in raw.iterrows()],
        }
    )
    for field, sources in RUN_FIELDS.items():
        runs[field] = _first_present(raw, sources)
    runs["head"] = runs["head"].fillna(DEFAULT_HEAD)  # runs from before the head group
    for key in ("backbone", "neck", "operator", "head", "scale", "dataset"):
        runs[key] = runs[key].fillna(UNKNOWN).astype(str)
    runs["img_size"] = _as_int(runs["img_size"])
    runs["seed"] = _as_int(runs["seed"])
    runs["reuse_across_code"] = runs["reuse_across_code"].astype(str).str.lower() == "true"
    runs["recipe_items"], runs["head_recipe"] = head_recipes(
        [_recipe_items(row) for _, row in raw.iterrows()], list(runs["head"])
    )
    runs["recipe"] = [_digest(items) for items in runs["recipe_items"]]
    runs["val_is_train"] = [_val_is_train(row) for _, row in raw.iterrows()]
    runs["requested_cells"] = [requested.get(sweep, frozenset()) for sweep in runs["sweep_id"]]
    for metric in FINAL_METRICS:
        runs[metric] = _reported_metric(raw, metric)
    for method in bench_methods(raw.columns):
        for part in BENCH_PARTS:
            column = schema.metric_column(schema.bench_metric(method, part))
            runs[schema.bench_metric(method, part)] = raw[column].astype(float) if column in raw else np.nan
        tag = schema.tag_column(schema.bench_tag(method))
        runs[f"bench/{method}/tag"] = raw[tag] if tag in raw else None
    return runs


def sweep_cells(raw: pd.DataFrame) -> dict[str, frozenset[tuple[str, ...]]]:
    """Per sweep (its `sweep_dir`), the backbone/neck/operator cells it was launched for: the
    product of its parent run's `grid` values, a factor the grid does not sweep (or sweeps
    with a Hydra function such as `choice(...)`) taking the values of the sweep's own cells.
    What the report calls missing: a cell asked for that has no run."""
    kind = schema.tag_column(schema.KIND_TAG)
    grid, where = schema.param_column(schema.SWEEP_GRID_PARAM), schema.param_column(schema.SWEEP_DIR_PARAM)
    sweep_id = schema.tag_column(schema.SWEEP_ID_TAG)
    if not {kind, grid, where} <= set(raw.columns):
        return {}
    parents = raw[(raw[kind] == schema.SWEEP_KIND) & raw[grid].notna() & raw[where].notna()]
    cells: dict[str, frozenset[tuple[str, ...]]] = {}
    for _, parent in parents.iterrows():
        try:
            swept = json.loads(parent[grid])
        except json.JSONDecodeError:  # cut at MAX_PARAM_CHARS: the cells alone say what ran
            swept = {}
        own = raw[raw[sweep_id] == parent[where]] if sweep_id in raw else raw.iloc[:0]
        values = []
        for factor in FACTOR_KEYS:
            listed = [v.strip() for v in str(swept.get(factor, "")).split(",") if v.strip()]
            if not listed or any("(" in v or "=" in v for v in listed):
                column = schema.tag_column(factor)
                listed = list(own[column].dropna().unique()) if column in own else []
            if not listed and factor == "head":  # a sweep from before the head group
                listed = [DEFAULT_HEAD]
            values.append(listed)
        cells[parent[where]] = frozenset(itertools.product(*values))
    return cells


def bench_methods(columns) -> list[str]:
    """The latency methods the bench stage logged (`bench/<method>/median_ms` metrics, or
    in a runs table `bench/<method>/median_ms` columns)."""
    prefix = schema.metric_column("")
    found = (schema.bench_method_of(column.removeprefix(prefix)) for column in columns)
    return sorted({method for method in found if method is not None})


def _recipe_items(row: pd.Series) -> dict[str, str]:
    """What a run's variant is besides its (backbone, neck, operator): its identity items
    (identity.py: params minus execution keys and the seed) without the factor groups' own
    keys, plus the dataset/weights fingerprints and the code identity when it logged them.
    Runs logged before the identity tags fall back on params and `lightyolo_version`/`git_sha`.
    A run tagged reuse_across_code=true leaves the code out: it was kept across versions."""
    prefix = schema.param_column("")
    params = {
        key[len(prefix):]: value for key, value in row.items()
        if key.startswith(prefix) and isinstance(value, str)
    }
    items = {
        key: value for key, value in identity.identity_items(params, with_seed=False).items()
        if not any(key.startswith(f"{factor}.") for factor in FACTOR_KEYS)
    }
    for tag, name in FINGERPRINT_TAGS.items():
        if isinstance(row.get(tag), str):
            items[name] = row[tag]
    reuse = str(_first_value(row, RUN_FIELDS["reuse_across_code"])).lower()
    if reuse != "true":
        code = row.get(schema.tag_column(schema.CODE_IDENTITY_TAG))
        if not isinstance(code, str):
            parts = [row.get(schema.tag_column(schema.VERSION_TAG)), row.get(schema.tag_column(schema.GIT_SHA_TAG))]
            code = " ".join(str(p) for p in parts if isinstance(p, str)) or None
        if code:
            items[CODE_ITEM] = code
    return items


def head_recipes(
    items: list[dict[str, str]], heads: list[str]
) -> tuple[list[dict[str, str]], list[dict[str, str]]]:
    """(recipe items, head items) per run. When the runs have several heads and the runs of
    each head agree on their loss items (`train.loss.*`), those items are the head's: moved
    out of the recipe, so that each head is compared under its own loss. Otherwise (one head,
    or runs of one head with different losses) nothing moves and a loss still splits recipes."""
    def loss_items(recipe: dict[str, str]) -> dict[str, str]:
        return {k: v for k, v in recipe.items() if k.startswith(HEAD_RECIPE_PREFIX)}

    per_head: dict[str, set[str]] = {}
    for recipe, head in zip(items, heads):
        per_head.setdefault(head, set()).add(json.dumps(loss_items(recipe), sort_keys=True))
    if len(per_head) < 2 or any(len(found) > 1 for found in per_head.values()):
        return items, [{} for _ in items]
    moved = [{k: v for k, v in recipe.items() if not k.startswith(HEAD_RECIPE_PREFIX)} for recipe in items]
    return moved, [loss_items(recipe) for recipe in items]


def _digest(items: dict[str, str]) -> str:
    return hashlib.sha256(json.dumps(items, sort_keys=True).encode()).hexdigest()[:12]


def _val_is_train(row: pd.Series) -> bool:
    """True when the run's params say val reads the same files as train (coco128)."""
    def split_params(split: str) -> dict[str, str]:
        prefix = schema.param_column(f"dataset.{split}.")
        return {k[len(prefix):]: v for k, v in row.items() if k.startswith(prefix) and isinstance(v, str)}

    train, val = split_params("train"), split_params("val")
    return bool(train) and train == val


def recipe_differences(items: list[dict[str, str]]) -> list[str]:
    """Per recipe, the items where it differs from the others ("train.epochs=20"), in the
    order given; "" for each when there is a single recipe."""
    keys = sorted({k for recipe in items for k in recipe})
    differing = [k for k in keys if len({recipe.get(k) for recipe in items}) > 1]
    return [", ".join(f"{k}={recipe.get(k, '∅')}" for k in differing) for recipe in items]


def _reported_metric(raw: pd.DataFrame, metric: str) -> pd.Series:
    """Each run's reported `metric`, from the first of its names (store/schema.py) it logged."""
    splits = raw.get(schema.tag_column(schema.EVAL_SPLIT_TAG), pd.Series(None, index=raw.index))
    values = pd.Series(np.nan, index=raw.index, dtype=float)
    for split in [None, *sorted(splits.dropna().unique())]:
        rows = splits.isna() if split is None else splits == split
        for name in schema.reported_metric_sources(metric, split):
            column = schema.metric_column(name)
            if column in raw:
                values = values.where(~(rows & values.isna()), raw[column].astype(float))
    return values


def _status(row: pd.Series) -> str:
    tag = row.get(schema.tag_column(schema.STATUS_TAG))
    if isinstance(tag, str) and tag in FINAL_STATUSES:
        return tag
    if row.get("mlflow_status") in ("FAILED", "KILLED"):
        return schema.FAILED
    return schema.RUNNING


def _first_value(row: pd.Series, sources: tuple[str, ...]) -> object:
    """The row's value in the first of `sources` that is a column (NaN included), else None."""
    return next((row[source] for source in sources if source in row), None)


def _first_present(raw: pd.DataFrame, sources: tuple[str, ...]) -> pd.Series:
    values = pd.Series([None] * len(raw), index=raw.index, dtype=object)
    for source in reversed(sources):  # earlier sources win
        if source in raw:
            values = raw[source].where(raw[source].notna(), values)
    return values


def _as_int(values: pd.Series) -> pd.Series:
    """Strings like "320" → Int64 (nullable); anything else → <NA>."""
    return pd.to_numeric(values, errors="coerce").round().astype("Int64")


# --- The bench stage's per-round medians (artifacts bench/<method>.json) ------------------


def with_round_medians(runs: pd.DataFrame, tracking_uri: str) -> pd.DataFrame:
    """Adds `bench/<method>/round_medians` (a list of ms in round order, or None) per bench
    method to the completed runs that logged the method's `bench/<method>.json`, so that the
    report can pair two cells of one bench run round by round. An unreadable file is named
    on stderr and skipped (its speed-ups then use the intervals)."""
    out = runs.copy()
    for method in bench_methods(runs.columns):
        column = f"bench/{method}/round_medians"
        out[column] = None
        measured = (out["status"] == "completed") & out[f"bench/{method}/median_ms"].notna()
        for index in out.index[measured]:
            out.at[index, column] = _read_round_medians(tracking_uri, out.at[index, "run_id"], method)
    return out


def _read_round_medians(tracking_uri: str, run_id: str, method: str) -> list[float] | None:
    path = schema.bench_rounds_artifact(method)
    store = Store(tracking_uri)
    if not store.has_artifact(run_id, path):
        return None
    with tempfile.TemporaryDirectory(prefix="lightyolo-report-") as tmp:
        local = store.download_artifact(run_id, path, tmp)
        try:
            values = json.loads(local.read_text(encoding="utf-8"))["round_medians_ms"]
            medians = [float(v) for v in values]
        except (ValueError, KeyError, TypeError) as err:
            print(f"lightyolo.report: skipped {path} of run {run_id}: expected "
                  f'{{"round_medians_ms": [numbers]}} ({type(err).__name__}: {err})',
                  file=sys.stderr)
            return None
    return medians if len(medians) >= 2 else None


# --- A report's own runs.csv as input (no MLflow store) -----------------------------------


def read_runs_csv(path: Path) -> pd.DataFrame:
    """The runs of an earlier report's `runs.csv` as `runs_table` rows, so that a report can
    be rebuilt where its MLflow store is not. What runs.csv does not keep: the recipe's items
    (rows of different recipes stay apart but their differing keys are not named) and the
    cells a sweep asked for (taken as the cells its runs logged: no "missing" rows).
    ReportError naming the file when it is unreadable or lacks the columns a report needs."""
    try:
        runs = pd.read_csv(path)
    except (OSError, ValueError) as err:
        raise ReportError(f"runs_csv={path}: cannot read it ({type(err).__name__}: {err})") from err
    if "head" not in runs:  # a report from before the head group: every run had YOLOv5's head
        runs["head"] = DEFAULT_HEAD
    needed = {"run_id", "status", "start_time", "recipe", "seed", *FACTOR_KEYS, *CONTEXT_KEYS}
    missing = sorted(needed - set(runs.columns))
    if missing:
        raise ReportError(f"runs_csv={path}: expected a report's runs.csv; missing columns "
                          f"{', '.join(missing)}")
    runs = runs.drop(columns=["included"], errors="ignore")
    for column in RUN_FIELDS:
        if column not in runs:
            runs[column] = None
    for metric in FINAL_METRICS:
        runs[metric] = runs[metric].astype(float) if metric in runs else np.nan
    runs["img_size"] = _as_int(runs["img_size"])
    runs["seed"] = _as_int(runs["seed"])
    for flag in ("reuse_across_code", "val_is_train"):
        runs[flag] = runs[flag].astype(str).str.lower() == "true" if flag in runs else False
    runs["recipe_items"] = [{} for _ in range(len(runs))]
    cells = {sweep: frozenset(group[list(FACTOR_KEYS)].astype(str).itertuples(index=False, name=None))
             for sweep, group in runs.groupby(runs["sweep_id"].fillna(""), sort=False)}
    runs["requested_cells"] = [cells[s] for s in runs["sweep_id"].fillna("")]
    for method in bench_methods(runs.columns):
        column = f"bench/{method}/round_medians"
        if column in runs:
            runs[column] = [json.loads(v) if isinstance(v, str) else None for v in runs[column]]
    return runs
