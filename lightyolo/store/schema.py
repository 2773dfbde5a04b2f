"""Every record the stages exchange through MLflow: run kinds, statuses, tag, metric, param and
artifact names and the identity keys. The writers (pipeline, sweep, bench, deploy, export) and
the readers (report, sweep summary, resume, benchmarks) both use these; no code outside
lightyolo/store/ spells a name (tests/test_store_schema.py). Change a name here and both
sides follow.

A cell is one run (no `kind` tag), nested under its sweep's run (`kind=sweep`); the report is
a run of its own (`kind=report`). MLflow's runs table sorts metric columns by name and its
column search lists matches in that order, so metric names lead with what they are:

- `test/map50_95`, `test/map50`, … (or `val/…` for a dataset without a test split): the
  cell's reported COCO figures, prefixed with the split they were measured on (tag
  `eval_split`). Training logs `train/<loss>`, `lr`, `val/map50_95` and `val/map50` per epoch
  (step = epoch); the final figures are logged at the last epoch's step.
- `val_best/map50_95`, `val_best/map50`, `val_best/epoch`: the epoch that model selection
  kept (chosen on val), beside the reported figure, never instead of it.
- `quick/latency_ms`, `quick/latency_p90_ms`, `quick/fps`: the in-run latency (a few passes in
  the training process, BatchNorm unfused): a sanity figure, not for comparisons; the bench
  stage's `bench/<method>/…` figures are.
- `params`, `params_m`, `gflops`, `gflops_640`, `train_seconds`, `train_images_per_s`,
  `eval_seconds`.
- `bench/<method>/…` and `deploy/<runtime>_<precision>/…`: written later, onto the cell's
  run, by the bench and deploy stages.
- `sweep/…`: the sweep run's summary.

Runs written before these names (`map50_95`, `best/map50_95`, `latency_ms`, …) are read
through `LEGACY`.
"""

from __future__ import annotations

from collections.abc import Mapping

# --- What a run is ------------------------------------------------------------------------
# A cell's run has no `kind` tag; the runs that trained nothing say what they are.
KIND_TAG = "kind"
SWEEP_KIND = "sweep"  # the parent run of one multirun; its cells nest under it
REPORT_KIND = "report"  # `python -m lightyolo.report`'s run (tables, plots, runs.csv)
REPORT_ARTIFACT_DIR = "report"  # where the report run (and its sweep's parent run) keeps its files
PARENT_RUN_TAG = "mlflow.parentRunId"  # how the UI nests a run under another, across processes

# --- A run's lifecycle (tag `status`) -----------------------------------------------------
STATUS_TAG = "status"
RUNNING = "running"
RESUMED = "resumed"  # a cell continued from its last.pt (tag `resumed_from_epoch`)
COMPLETED = "completed"
FAILED = "failed"  # with tag `error`
INTERRUPTED = "interrupted"  # stopped by a signal or a failed write: a rerun resumes it
ERROR_TAG = "error"
RESUMED_FROM_TAG = "resumed_from_epoch"

# --- Who owns a running run (a rerun leaves a RUNNING run alone while its owner lives) -----
OWNER_HOST_TAG = "owner.host"
OWNER_PID_TAG = "owner.pid"
HEARTBEAT_TAG = "owner.heartbeat"  # unix seconds of the owner's last sign of life
CLAIMED_RUN_TAG = "run_id"  # on a claim record (cell_claim.py): the run its holder opened

# --- A cell's identity and provenance (docs/design.md, "Cell identity") ---------------------
CONFIG_HASH_TAG = "config_hash"  # everything that changes the result, code included
RECIPE_HASH_TAG = "recipe_hash"  # the same without the code: cells kept across code versions
VARIANT_HASH_TAG = "variant_hash"  # the cell without its seed: its seeds share it
CODE_IDENTITY_TAG = "code_identity"
SEED_TAG = "seed"
RECIPE_TAG = "recipe"  # the training recipe chosen (`train=grid`: conf/train/grid.yaml)
SWEEP_ID_TAG = "sweep_id"  # the multirun directory a cell was launched from
OUTPUT_DIR_TAG = "output_dir"  # where the cell's files are on the machine that trained it
GIT_SHA_TAG = "git_sha"
VERSION_TAG = "lightyolo_version"
DATASET_FINGERPRINT_TAG = "dataset_fingerprint"
WEIGHTS_DIGEST_TAG = "weights_digest"
REUSE_ACROSS_CODE_TAG = "reuse_across_code"  # a completed cell kept for other code (also a config key)
# The group choices, logged as tags and as params under their own names (`backbone=ghost`).
GROUP_PARAMS: tuple[str, ...] = ("backbone", "neck", "operator", "dataset", "head")

# --- How a cell ran (tags) ----------------------------------------------------------------
THREADS_TAG = "threads"
THREADS_REASON_TAG = "threads_reason"  # why `train.threads=auto` chose that count
DATA_ISSUES_TAG = "data_issues"  # the readers' counts of skipped or odd files (JSON)
WEIGHTS_TRANSFERRED_TAG = "weights_transferred"  # what `model.weights` loaded into the model
LATENCY_DEVICE_TAG = "latency_device"  # of the quick latency
LATENCY_THREADS_TAG = "latency_threads"
LATENCY_BATCH_TAG = "latency_batch"

# The COCO figures of an evaluation (eval/coco.py's stats), logged under `<split>/`.
COCO_METRICS: tuple[str, ...] = ("map50_95", "map50", "map75", "map_small", "map_medium", "map_large")
VAL_BEST = "val_best"
QUICK = "quick"
QUICK_METRICS: tuple[str, ...] = ("latency_ms", "latency_p90_ms", "fps")
EVAL_SPLIT_TAG = "eval_split"
# The model's own measurements and the run's costs (metrics).
PARAMS = "params"
PARAMS_M = "params_m"
GFLOPS = "gflops"  # at the run's image size
GFLOPS_640 = "gflops_640"
TRAIN_SECONDS = "train_seconds"
TRAIN_IMAGES_PER_S = "train_images_per_s"
EVAL_SECONDS = "eval_seconds"  # and `eval_seconds/<stage>` per stage of the evaluation
LEARNING_RATE = "lr"  # per epoch, beside `train/<loss part>` and `val/map50_95`, `val/map50`

# The bench stage (bench/experiment.py): per method, metrics `bench/<method>/<part>`, a tag
# `bench/<method>` (JSON: how it was measured, or why it is unsupported) and an artifact
# `bench/<method>.json` (the round medians the report pairs by round).
BENCH = "bench"
BENCH_PARTS: tuple[str, ...] = ("median_ms", "ci_low_ms", "ci_high_ms")
# The deployment stage (deploy/experiment.py): metrics `deploy/<runtime>_<precision>/<COCO
# figure>` and a tag `deploy/<runtime>_<precision>` (JSON: how it was measured).
DEPLOY = "deploy"

# The sweep parent run's summary (metrics), and the tag naming its best cell.
SWEEP_CELLS = "sweep/cells"
SWEEP_TRAINED = "sweep/trained"
SWEEP_SKIPPED = "sweep/skipped"
SWEEP_FAILED = "sweep/failed"
SWEEP_BEST_MAP = "sweep/best_map50_95"
SWEEP_BEST_CELL_TAG = "best_cell"

# A cell's checkpoints on its run, kept current every epoch (lightyolo/cell_checkpoints.py): what a job
# resumed on another node starts from; and the tag saying where a resumed run found its last.pt.
CHECKPOINT_SOURCE_TAG = "checkpoint_source"  # "local" (its output dir) or "store" (fetched)

# Names logged before this schema: reported name → the old one.
LEGACY: dict[str, str] = {
    **{f"{QUICK}/{name}": name for name in QUICK_METRICS},
    **{f"{VAL_BEST}/{name}": f"best/{name}" for name in ("map50_95", "map50", "epoch")},
}


def split_metric(split: str, name: str) -> str:
    """`test/map50_95` and the like: a COCO figure measured on `split`."""
    return f"{split}/{name}"


def evaluation_metrics(split: str, metrics: Mapping[str, float]) -> dict[str, float]:
    """An evaluation's COCO figures under the names of the split they were measured on."""
    return {split_metric(split, name): float(value) for name, value in metrics.items()}


def val_best_metrics(map50_95: float, map50: float, epoch: int) -> dict[str, float]:
    """The epoch model selection kept (1-based) and its val figures."""
    return {f"{VAL_BEST}/map50_95": float(map50_95), f"{VAL_BEST}/map50": float(map50), f"{VAL_BEST}/epoch": float(epoch)}


def quick_latency_metrics(median_ms: float, p90_ms: float, fps: float) -> dict[str, float]:
    return {f"{QUICK}/latency_ms": median_ms, f"{QUICK}/latency_p90_ms": p90_ms, f"{QUICK}/fps": fps}


def reported_metric_sources(name: str, split: str | None) -> tuple[str, ...]:
    """Where a run whose tag `eval_split` is `split` keeps its reported figure `name`
    (`map50_95`, `latency_ms`, `params` …): candidate metric names, current first, then the
    legacy one. (A legacy run also has `val/map50_95` per epoch: never its test figure.)"""
    if name in COCO_METRICS:
        return ((split_metric(split, name),) if split else ()) + (name,)
    if name in QUICK_METRICS:
        return (f"{QUICK}/{name}", name)
    return (name,)


def train_metric(name: str) -> str:
    """`train/box_loss` and the like: a loss part, per epoch."""
    return f"train/{name}"


def eval_stage_metric(stage: str) -> str:
    return f"{EVAL_SECONDS}/{stage}"


def bench_metric(method: str, part: str) -> str:
    return f"{BENCH}/{method}/{part}"


def bench_tag(method: str) -> str:
    return f"{BENCH}/{method}"


def bench_rounds_artifact(method: str) -> str:
    return f"{BENCH}/{method}.json"


def bench_method_of(metric: str) -> str | None:
    """The method of a `bench/<method>/median_ms` metric name, else None."""
    parts = metric.split("/")
    return parts[1] if len(parts) == 3 and parts[0] == BENCH and parts[2] == "median_ms" else None


def deploy_metric(target: str, name: str) -> str:
    """`deploy/openvino_int8/map50_95`: a COCO figure measured through a deployment target."""
    return f"{DEPLOY}/{target}/{name}"


def deploy_tag(target: str) -> str:
    return f"{DEPLOY}/{target}"


# --- A cell's artifacts (what another process reads back: export, bench, report, resume) ---
CONFIG_ARTIFACT = "config.yaml"  # the resolved config the cell trained with
WEIGHTS_DIR = "weights"  # best.pt (kept by model selection) and last.pt (to resume from)
WEIGHTS_ARTIFACT = f"{WEIGHTS_DIR}/best.pt"
ONNX_ARTIFACT = "export/model.onnx"  # written by export or the bench stage
PREDICTIONS_ARTIFACT = "eval/predictions.json"  # COCO detections of the reported evaluation
COCO_STATS_ARTIFACT = "eval/coco_stats.json"
SWEEP_SUMMARY_ARTIFACT = "summary.txt"  # the end-of-sweep table, on the sweep's parent run


# --- Reading runs back: the columns of `Store.runs_frame` ---------------------------------

def tag_column(name: str) -> str:
    return f"tags.{name}"


def metric_column(name: str) -> str:
    return f"metrics.{name}"


def param_column(key: str) -> str:
    """A config key as a param column (`params.train.img_size`); "" gives the prefix."""
    return f"params.{key}"


# Where the report reads each run's context: its runs-table column → the frame columns that
# may hold it, current name first (a run from before a tag existed has only the param).
RUN_FIELD_SOURCES: dict[str, tuple[str, ...]] = {
    **{key: (tag_column(key),) for key in ("backbone", "neck", "operator")},
    "head": (tag_column("head"), param_column("head")),
    "scale": (param_column("model.scale"),),
    "img_size": (param_column("train.img_size"),),
    "dataset": (tag_column("dataset"), param_column("dataset.name")),
    "seed": (tag_column(SEED_TAG), param_column("seed")),
    "error": (tag_column(ERROR_TAG),),
    "epochs": (param_column("train.epochs"),),
    "recipe_name": (tag_column(RECIPE_TAG),),
    "latency_device": (tag_column(LATENCY_DEVICE_TAG),),
    "latency_threads": (tag_column(LATENCY_THREADS_TAG),),
    "latency_batch": (tag_column(LATENCY_BATCH_TAG),),
    "bench_warmup": (param_column("bench.warmup"),),
    "bench_iters": (param_column("bench.iters"),),
    "git_sha": (tag_column(GIT_SHA_TAG),),
    "lightyolo_version": (tag_column(VERSION_TAG),),
    "sweep_id": (tag_column(SWEEP_ID_TAG),),
    "config_hash": (tag_column(CONFIG_HASH_TAG),),
    "variant_hash": (tag_column(VARIANT_HASH_TAG),),
    "code_identity": (tag_column(CODE_IDENTITY_TAG),),
    "reuse_across_code": (tag_column(REUSE_ACROSS_CODE_TAG), param_column(REUSE_ACROSS_CODE_TAG)),
    "eval_split": (tag_column(EVAL_SPLIT_TAG),),
    "data_issues": (tag_column(DATA_ISSUES_TAG),),
    "best_map50_95": (metric_column(f"{VAL_BEST}/map50_95"), metric_column(LEGACY[f"{VAL_BEST}/map50_95"])),
    "best_epoch": (metric_column(f"{VAL_BEST}/epoch"), metric_column(LEGACY[f"{VAL_BEST}/epoch"])),
}
# A sweep parent run's params: what it was launched with.
SWEEP_GRID_PARAM = "grid"  # JSON: the swept keys and their values
SWEEP_DIR_PARAM = "sweep_dir"
SWEEP_OVERRIDES_PARAM = "overrides"
