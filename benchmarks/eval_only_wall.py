"""Wall and CPU time of an evaluation-only run, this checkout against another, interleaved
(issue 25: YOLOv5n's weights on coco128 at 640, `train.epochs=0`).

    python benchmarks/eval_only_wall.py --baseline /path/to/checkout-before [--rounds 2]
        [--shared ../shared] [OVERRIDE ...]

Each round runs the same `python -m lightyolo.run dataset=coco128 model.weights=<yolov5n>
train.epochs=0 train.img_size=640` once with `--baseline`'s code and once with this
checkout's (order alternating), each in a fresh process with a fresh MLflow store; the figure
is the process's wall time and its CPU time (`os.wait4`, loader workers included). The
medians and this/baseline ratios are printed; the two sides share the machine's load.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def timed_run(checkout: Path, overrides: list[str]) -> tuple[float, float]:
    """(wall s, CPU s) of one evaluation-only run with `checkout`'s code."""
    with tempfile.TemporaryDirectory() as tmp:
        env = {**os.environ, "PYTHONPATH": str(checkout)}
        command = [sys.executable, "-m", "lightyolo.run", *overrides,
                   f"mlflow.tracking_uri=sqlite:///{tmp}/mlflow.db", f"hydra.run.dir={tmp}/out"]
        start = time.perf_counter()
        proc = subprocess.Popen(command, cwd=tmp, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(status)
        if proc.returncode:
            raise SystemExit(f"{checkout}: the run exited {proc.returncode}")
        return wall, usage.ru_utime + usage.ru_stime


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--baseline", type=Path, required=True, help="checkout of the code to compare with")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--shared", type=Path, default=REPO.parent / "shared", help="the shared files (coco128, weights)")
    parser.add_argument("overrides", nargs="*")
    args = parser.parse_args()
    shared = args.shared.resolve()
    overrides = ["dataset=coco128", f"dataset.root={shared / 'data' / 'coco128'}",
                 f"model.weights={shared / 'weights' / 'yolov5n.state_dict.pt'}", "train.epochs=0",
                 "train.img_size=640", *args.overrides]
    codes = {"baseline": args.baseline.resolve(), "this": REPO}
    times: dict[str, list[tuple[float, float]]] = {name: [] for name in codes}
    for round_ in range(args.rounds):
        order = list(codes) if round_ % 2 == 0 else list(reversed(codes))
        for name in order:
            wall, cpu = timed_run(codes[name], overrides)
            times[name].append((wall, cpu))
            print(f"round {round_ + 1} {name}: {wall:.1f} s wall, {cpu:.1f} s CPU (load {os.getloadavg()[0]:.1f})", flush=True)
    medians = {name: (statistics.median(w for w, _ in t), statistics.median(c for _, c in t)) for name, t in times.items()}
    for name, (wall, cpu) in medians.items():
        print(f"{name}: median {wall:.1f} s wall, {cpu:.1f} s CPU")
    (wall_b, cpu_b), (wall_t, cpu_t) = medians["baseline"], medians["this"]
    print(f"this / baseline: {wall_t / wall_b:.2f} of the wall time, {cpu_t / cpu_b:.2f} of the CPU time")


if __name__ == "__main__":
    main()
