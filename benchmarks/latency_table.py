"""Latency of all 16 cells at scale n: PyTorch eager vs ONNX Runtime, CPU, one thread, batch 1.

Every cell found in conf/ (`measure.zoo.discover_cells`) is built at scale n for 80 classes
with random weights (latency does not depend on the weights' values; no training needed),
deployed as the bench stage deploys it (eval, BatchNorm fused, float32, contiguous NCHW),
and all (cell, runtime) pairs of one image size are timed interleaved with the bench stage's
protocol (`lightyolo.bench.stage`): R rounds, shuffled order, warm-up + timed passes per
visit, median of round medians with a 95 % bootstrap CI over rounds. Timed by the process's
CPU time by default (`clock=cpu`; at one thread that is the pass's compute time, and other
processes on a shared machine barely move it), `clock=wall` for elapsed time. Prints a
markdown table per image size with the torch / onnxruntime ratio (per round, with its CI).

    PYTHONPATH=. python benchmarks/latency_table.py [sizes=320,640] [rounds=6] [warmup=2] [iters=5] [threads=1] [clock=cpu|wall]
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

import torch

from lightyolo.bench.experiment import deployed_passes
from lightyolo.bench.runtimes import build_deployments, configure_threads, device_name
from lightyolo.bench.stage import interleaved_timings, round_ratio, summarise
from lightyolo.measure.zoo import build_cell, discover_cells


def main(argv: list[str]) -> None:
    options = dict(a.split("=", 1) for a in argv)
    sizes = [int(s) for s in options.get("sizes", "320,640").split(",")]
    rounds, warmup, iters = (int(options.get(k, d)) for k, d in (("rounds", 6), ("warmup", 2), ("iters", 5)))
    threads = int(options.get("threads", 1))
    clock = options.get("clock", "cpu")
    configure_threads(threads)
    runtimes = build_deployments(["torch", "onnxruntime"], ["fp32"], "cpu", threads)
    torch.manual_seed(0)
    cells = discover_cells()
    models = {cell.name: build_cell(cell, "n", nc=80).eval() for cell in cells}
    print(f"{device_name('cpu')}, {threads} thread(s), batch 1, scale n, nc 80, random weights; "
          f"{rounds} rounds × ({warmup} warm-up + {iters} timed passes) per (cell, runtime), interleaved, "
          f"{clock} clock")
    print(f"before: {subprocess.run(['uptime'], capture_output=True, text=True).stdout.strip()}")
    for img in sizes:
        with tempfile.TemporaryDirectory(prefix="latency-table-") as tmp:
            passes = deployed_passes({n: (m, img) for n, m in models.items()}, runtimes, 1, Path(tmp)).passes
            times = interleaved_timings(passes, rounds=rounds, warmup=warmup, iters=iters, clock=clock)
        print(f"\n### {img} px\n")
        print("| cell | torch ms [95% CI] | onnxruntime ms [95% CI] | torch / onnxruntime [95% CI] |")
        print("|---|---|---|---|")
        for name in models:
            eager, onnx = times[(name, "torch")], times[(name, "onnxruntime")]
            columns = []
            for t in (eager, onnx):
                s = summarise(t)
                columns.append(f"{s.median_ms:.1f} [{s.ci_low_ms:.1f}, {s.ci_high_ms:.1f}]")
            ratio = round_ratio(eager, onnx)
            columns.append(f"{ratio.median:.2f} [{ratio.ci_low:.2f}, {ratio.ci_high:.2f}]")
            print(f"| {name} | " + " | ".join(columns) + " |", flush=True)
    print(f"\nafter: {subprocess.run(['uptime'], capture_output=True, text=True).stdout.strip()}")


if __name__ == "__main__":
    main(sys.argv[1:])
