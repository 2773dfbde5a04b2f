"""The names a cell's run is logged under, shared by the writer (pipeline) and the readers
(report, sweep summary, benchmarks): change a name here and both sides follow.

MLflow's runs table sorts metric columns by name and its column search lists matches in that
order, so the names lead with what they are:

- `test/map50_95`, `test/map50`, … (or `val/…` for a dataset without a test split): the
  cell's reported COCO figures, prefixed with the split they were measured on (tag
  `eval_split`). Training logs `val/map50_95` and `val/map50` per epoch (step = epoch); the
  final figures are logged at the last epoch's step.
- `val_best/map50_95`, `val_best/map50`, `val_best/epoch`: the epoch that model selection
  kept (chosen on val), beside the reported figure, never instead of it.
- `quick/latency_ms`, `quick/latency_p90_ms`, `quick/fps`: the in-run latency (a few passes in
  the training process, BatchNorm unfused): a sanity figure, not for comparisons; the bench
  stage's `bench/<method>/…` figures are.
- `params`, `params_m`, `gflops`, `gflops_640`, `train_seconds`, `train_images_per_s`.

Runs written before these names (`map50_95`, `best/map50_95`, `latency_ms`, …) are read
through `LEGACY`.
"""

from __future__ import annotations

from collections.abc import Mapping

# The COCO figures of an evaluation (eval/coco.py's stats), logged under `<split>/`.
COCO_METRICS: tuple[str, ...] = ("map50_95", "map50", "map75", "map_small", "map_medium", "map_large")
VAL_BEST = "val_best"
QUICK = "quick"
QUICK_METRICS: tuple[str, ...] = ("latency_ms", "latency_p90_ms", "fps")
EVAL_SPLIT_TAG = "eval_split"

# The sweep parent run's summary (metrics), and the tag naming its best cell.
SWEEP_CELLS = "sweep/cells"
SWEEP_TRAINED = "sweep/trained"
SWEEP_SKIPPED = "sweep/skipped"
SWEEP_FAILED = "sweep/failed"
SWEEP_BEST_MAP = "sweep/best_map50_95"
SWEEP_BEST_CELL_TAG = "best_cell"

# A cell's checkpoints on its run, kept current every epoch (lightyolo/cell_checkpoints.py): what a job
# resumed on another node starts from; and the tag saying where a resumed run found its last.pt.
WEIGHTS_ARTIFACT_DIR = "weights"
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
