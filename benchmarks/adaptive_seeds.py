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
one only). At full size this trains 9-24 grid-recipe cells (7.3 min of a 2-core machine per
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
from lightyolo.report.aggregate import POINTS, included_runs
from lightyolo.report.collect import read_runs
from lightyolo.report.sequential import SequentialDesign, replay
from lightyolo.report import stats
from lightyolo.settings import tracking_uri

SLICE = ["backbone=c3,ghost,mobilenetv3", "neck=pan", "operator=conv"]
BASELINE = Cell("c3", "pan", "conv")
VARIANTS = [Cell("ghost", "pan", "conv"), Cell("mobilenetv3", "pan", "conv")]
EXPERIMENT = "adaptive-seeds-bench"


def sweep(workdir: Path, arguments: list[str]) -> None:
    command = [sys.executable, "-m", "lightyolo.sweep", "lightweight", *SLICE,
               f"experiment={EXPERIMENT}", "bench.after_sweep=false", *arguments]
    print("$", " ".join(command[1:]), flush=True)
    subprocess.run(command, cwd=workdir, check=True, env={**os.environ, "OMP_NUM_THREADS": "1"})


def scores(workdir: Path) -> dict[Cell, dict[int, float]]:
    """seed → mAP50-95 (points) per cell, from the store."""
    runs = included_runs(read_runs(tracking_uri(None, workdir), EXPERIMENT))
    out: dict[Cell, dict[int, float]] = {}
    for _, run in runs.iterrows():
        cell = Cell(run["backbone"], run["neck"], run["operator"])
        out.setdefault(cell, {})[int(run["seed"])] = float(run["map50_95"]) * POINTS
    return out


def fixed_verdicts(values: dict[Cell, dict[int, float]], seeds: int) -> list[str]:
    base = {s: v for s, v in values[BASELINE].items() if s < seeds}
    family = [stats.compare_seeds({s: v for s, v in values[c].items() if s < seeds}, base)
              for c in VARIANTS]
    p = [c.p_value for c in family]
    return [stats.verdict(c, p_holm, multiplier=k, margin=2.0)
            for c, p_holm, k in zip(family, stats.holm(p), stats.holm_multipliers(p))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", type=Path, default=Path("adaptive-seeds-bench"))
    parser.add_argument("--fixed", type=int, default=5, help="seeds per cell of the fixed design")
    args, overrides = parser.parse_known_args()
    args.workdir.mkdir(parents=True, exist_ok=True)
    adaptive_only = [o for o in overrides if o.startswith("seeds.")]
    shared = [o for o in overrides if not o.startswith("seeds.")]
    design: SequentialDesign = parse_options(adaptive_only, family=len(VARIANTS)).design

    sweep(args.workdir, ["seeds=adaptive", *adaptive_only, *shared])
    adaptive = scores(args.workdir)
    adaptive_cells = sum(len(v) for v in adaptive.values())
    sweep(args.workdir, [f"seed={','.join(map(str, range(args.fixed)))}", *shared])
    fixed = scores(args.workdir)

    print(f"\n{'variant':<22} {'adaptive (seeds)':<58} fixed {args.fixed} seeds")
    for cell, words in zip(VARIANTS, fixed_verdicts(fixed, args.fixed)):
        common = sorted(set(adaptive.get(cell, {})) & set(adaptive.get(BASELINE, {})))
        differences = [adaptive[cell][s] - adaptive[BASELINE][s] for s in common]
        decided = (f"{replay(differences, design).decision} ({len(common)})"
                   if len(common) >= design.first else f"not enough seeds ({len(common)})")
        print(f"{str(cell):<22} {decided:<58} {words}")
    print(f"cells trained: adaptive {adaptive_cells}, fixed {args.fixed} seeds "
          f"{args.fixed * (len(VARIANTS) + 1)}; {design.describe()}")


if __name__ == "__main__":
    main()
