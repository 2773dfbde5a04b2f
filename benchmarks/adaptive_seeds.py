"""Adaptive seeds against a fixed design, on a 3-cell slice of the grid recipe.

    python benchmarks/adaptive_seeds.py [--workdir DIR] [--fixed 5] [OVERRIDE ...]

1. `python -m lightyolo.sweep lightweight seeds=adaptive` on the slice c3/pan/conv
   (baseline), ghost/pan/conv, mobilenetv3/pan/conv (the grid recipe, shapes_grid), which
   prints why it launched each extra seed; the cells it trained are counted.
2. The fixed design of the same slice: seeds 0..F−1 of every cell (F = --fixed), as one
   ordinary sweep in the same store, so the seeds the adaptive run already trained are
   skipped, not retrained.
3. Prints per variant the adaptive decision (and the seeds it used) beside the fixed
   design's verdict (paired t over seeds 0..F−1, Holm over the two comparisons, the report's
   own functions), and the cells each design costs.

OVERRIDEs go to both sweeps (`seeds.first=`, `seeds.cap=`, `seeds.margin=` to the adaptive
one only). `--tracking-uri URI --experiment NAME` run both in an existing store (say, the
grid's own, with `reuse_across_code=true`), so the seeds it already holds are reused, not
retrained; the cells each design *uses* are counted either way (the adaptive design's by
replaying its looks in seed order: the seeds of each variant up to the look that decided it,
and the baseline's up to the largest of those). At full size this trains 9-24 grid-recipe cells (7.3 min of a 2-core machine per
conv cell, README): hours. A quick check of the wiring, minutes:
    python benchmarks/adaptive_seeds.py seeds.cap=4 --fixed 4 train.epochs=2 \
        dataset.num_train=32 dataset.num_val=16 dataset.num_test=16 train.img_size=64 \
        train.threads=1 train.workers=0
whose mAP figures mean nothing.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

from lightyolo.adaptive_sweep import Cell, parse_options
from lightyolo.configs import DEFAULT_HEAD
from lightyolo.report.aggregate import POINTS, included_runs
from lightyolo.report.collect import read_runs
from lightyolo.report.sequential import SequentialDesign, replay
from lightyolo.report import stats
from lightyolo.settings import tracking_uri

SLICE = ["backbone=c3,ghost,mobilenetv3", "neck=pan", "operator=conv"]
BASELINE = Cell("c3", "pan", "conv")
VARIANTS = [Cell("ghost", "pan", "conv"), Cell("mobilenetv3", "pan", "conv")]


def sweep(workdir: Path, store: list[str], arguments: list[str]) -> None:
    command = [sys.executable, "-m", "lightyolo.sweep", "lightweight", *SLICE, *store,
               "bench.after_sweep=false", *arguments]
    print("$", " ".join(command[1:]), flush=True)
    subprocess.run(command, cwd=workdir, check=True, env={**os.environ, "OMP_NUM_THREADS": "1"})


def scores(uri: str, experiment: str) -> dict[Cell, dict[int, float]]:
    """seed → mAP50-95 (points) per cell of the slice, from the store."""
    runs = included_runs(read_runs(uri, experiment))
    out: dict[Cell, dict[int, float]] = {}
    for _, run in runs.iterrows():
        cell = Cell(run["backbone"], run["neck"], run["operator"])
        if cell not in (BASELINE, *VARIANTS) or run["head"] != DEFAULT_HEAD:
            continue
        out.setdefault(cell, {})[int(run["seed"])] = float(run["map50_95"]) * POINTS
    return out


def fixed_verdicts(values: dict[Cell, dict[int, float]], seeds: int) -> list[str]:
    base = {s: v for s, v in values[BASELINE].items() if s < seeds}
    family = [stats.compare_seeds({s: v for s, v in values[c].items() if s < seeds}, base)
              for c in VARIANTS]
    p = [c.p_value for c in family]
    return [stats.verdict(c, p_holm, multiplier=k, margin=2.0)
            for c, p_holm, k in zip(family, stats.holm(p), stats.holm_multipliers(p))]


def adaptive_use(values: dict[Cell, dict[int, float]], design: SequentialDesign) -> tuple[dict[Cell, str], int]:
    """Per variant the look that decided it (replayed in seed order on its paired
    differences, up to the cap) and the cells the adaptive design uses: each variant's seeds
    up to that look, the baseline's up to the largest of them."""
    decisions, used = {}, {}
    base = values.get(BASELINE, {})
    for cell in VARIANTS:
        common = sorted(set(values.get(cell, {})) & set(base))[: design.cap]
        if len(common) < design.first:
            decisions[cell], used[cell] = f"not enough seeds ({len(common)})", len(common)
            continue
        decided = replay([values[cell][s] - base[s] for s in common], design)
        decisions[cell], used[cell] = f"{decided.decision} at {decided.n} seeds", decided.n
    return decisions, sum(used.values()) + max(used.values(), default=0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", type=Path, default=Path("adaptive-seeds-bench"))
    parser.add_argument("--fixed", type=int, default=5, help="seeds per cell of the fixed design")
    parser.add_argument("--tracking-uri", default=None, help="MLflow store (default: the workdir's mlflow.db)")
    parser.add_argument("--experiment", default="adaptive-seeds-bench")
    args, overrides = parser.parse_known_args()
    args.workdir.mkdir(parents=True, exist_ok=True)
    uri = args.tracking_uri or tracking_uri(None, args.workdir.resolve())
    store = [f"experiment={args.experiment}", f"mlflow.tracking_uri={uri}"]
    adaptive_only = [o for o in overrides if o.startswith("seeds.")]
    shared = [o for o in overrides if not o.startswith("seeds.")]
    design: SequentialDesign = parse_options(adaptive_only, family=len(VARIANTS)).design

    sweep(args.workdir, store, ["seeds=adaptive", *adaptive_only, *shared])
    decisions, adaptive_cells = adaptive_use(scores(uri, args.experiment), design)
    sweep(args.workdir, store, [f"seed={','.join(map(str, range(args.fixed)))}", *shared])
    fixed = scores(uri, args.experiment)

    print(f"\n{'variant':<22} {'adaptive':<40} fixed {args.fixed} seeds")
    for cell, words in zip(VARIANTS, fixed_verdicts(fixed, args.fixed)):
        print(f"{str(cell):<22} {decisions[cell]:<40} {words}")
    print(f"cells used: adaptive {adaptive_cells}, fixed {args.fixed} seeds "
          f"{args.fixed * (len(VARIANTS) + 1)}; {design.describe()}")


if __name__ == "__main__":
    main()
