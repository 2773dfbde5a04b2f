"""A/A check of the bench stage: two copies of one cell must come out equally fast.

Trains seeds 0 and 1 of c3/pan/conv (scale n) for one epoch on a tiny synthetic shapes set
with `pipeline.run` (a real MLflow store in a temp dir), then runs the bench stage on both
twice (`lightyolo.bench.experiment.bench_runs`, the code behind `python -m lightyolo.bench`),
torch and onnxruntime on CPU, at `img` px (default 320; the cells train at 64 to be quick).

Prints, per run of the stage and runtime: each cell's median [95 % CI] and CI half-width as
% of the median, the speed-up of seed 1 over seed 0 (per-round time ratio seed0 / seed1 of
that run's timings, bootstrap CI over rounds); then how far each cell's median moved
between the two runs.
Acceptance (issue 10): speed-up CI contains 1.00, half-widths <= 5 %, medians move <= 5 %.

    PYTHONPATH=. python benchmarks/bench_aa.py [threads=1] [rounds=30] [iters=20] [warmup=5] [img=320] [clock=auto|wall|cpu]
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))

from conftest import compose_config, tiny_overrides  # noqa: E402  (the tests' tiny recipe)

from lightyolo import pipeline  # noqa: E402
from lightyolo.bench import experiment as bench  # noqa: E402
from lightyolo.bench.stage import round_ratio  # noqa: E402


def load() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()


def main(argv: list[str]) -> None:
    options = dict(a.split("=", 1) for a in argv)
    threads = int(options.get("threads", 1))
    rounds, iters = int(options.get("rounds", 30)), int(options.get("iters", 20))
    warmup, img = int(options.get("warmup", 5)), int(options.get("img", 320))
    clock = options.get("clock", "auto")
    os.environ.setdefault("OMP_NUM_THREADS", str(threads))
    print(f"before: {load()}")
    with tempfile.TemporaryDirectory(prefix="bench-aa-") as tmp:
        tmp_path = Path(tmp)
        for seed in (0, 1):
            cfg = compose_config(tiny_overrides(tmp_path) + ["experiment=aa", f"seed={seed}"])
            pipeline.run(cfg, output_dir=tmp_path / f"s{seed}")
        uri = cfg.mlflow.tracking_uri
        settings = bench.BenchSettings(
            threads=threads, img=img, rounds=rounds, warmup=warmup, iters=iters, clock=clock
        )
        medians: list[dict[tuple[str, str], float]] = []
        for repeat in (1, 2):
            results = bench.bench_runs(uri, "aa", settings, log=lambda _: None)
            by_key = {(r.run_name, r.method): r for r in results}
            medians.append({k: r.summary.median_ms for k, r in by_key.items()})
            print(f"\n## run {repeat} of the stage ({rounds} rounds × {warmup} warm-up + {iters} passes, "
                  f"{threads} thread(s), {img} px, {settings.resolved_clock()} clock)")
            print("| cell | method | median ms [95% CI] | half-width % |\n|---|---|---|---|")
            for (name, method), r in sorted(by_key.items()):
                s = r.summary
                print(f"| {name} | {method} | {s.median_ms:.2f} [{s.ci_low_ms:.2f}, {s.ci_high_ms:.2f}] "
                      f"| {s.half_width_pct:.1f} |")
            print("\n| method | speed-up of seed 1 over seed 0 [95% CI] | CI contains 1.00 |\n|---|---|---|")
            for method in sorted({m for _, m in by_key}):
                seed0, seed1 = by_key[("c3-pan-conv-s0", method)], by_key[("c3-pan-conv-s1", method)]
                ratio = round_ratio(seed0.times_ms, seed1.times_ms)
                print(f"| {method} | {ratio.median:.3f} [{ratio.ci_low:.3f}, {ratio.ci_high:.3f}] "
                      f"| {ratio.contains(1.0)} |")
        print("\n## each cell's median, run 1 → run 2 of the stage")
        for key in sorted(medians[0]):
            before, after = medians[0][key], medians[1][key]
            print(f"- {key[0]} {key[1]}: {before:.2f} → {after:.2f} ms ({100 * (after - before) / before:+.1f} %)")
    print(f"\nafter: {load()}")


if __name__ == "__main__":
    main(sys.argv[1:])
