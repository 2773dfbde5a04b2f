"""The default job's training speed on an idle machine and under a fixed background load, for
three thread settings, in one run (issue 25; docs/threads.md).

    python benchmarks/threads_under_load.py --baseline /path/to/checkout-before [--rounds 2]
        [--busy 2] [--epochs 2] [--train-images 96] [OVERRIDE ...]

Variants, each a real `python -m lightyolo.run` (the default job on the synthetic shapes
dataset, shortened to `--train-images` images and `--epochs` epochs) in a fresh process:

- `old default`: the code at `--baseline` (a checkout from before this change), with torch's
  own thread count and OpenMP's default wait policy;
- `1 thread`: this checkout with `train.threads=1`;
- `new default`: this checkout as it ships (`train.threads=auto`, OMP_WAIT_POLICY=PASSIVE).

Conditions: `idle` (whatever else the machine runs: the load average is printed) and
`loaded` (`--busy` processes that spin on a core each, started by this script and stopped
after). Rounds interleave the variants within each condition. The figure is the run's own
logged `train_images_per_s` (wall clock of the training loop), read back from its MLflow
store; the table gives the median over rounds and each variant's ratio to the best.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
from contextlib import contextmanager
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SPIN = "while True: pass"


def run_job(checkout: Path, overrides: list[str], env_extra: dict[str, str], workdir: Path) -> float:
    """One shortened default job with `checkout`'s code; its logged training images/s."""
    store = workdir / "mlflow.db"
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "OMP_NUM_THREADS")}
    env |= {"PYTHONPATH": str(checkout), **env_extra}
    command = [sys.executable, "-m", "lightyolo.run", *overrides, f"mlflow.tracking_uri=sqlite:///{store}",
               f"hydra.run.dir={workdir / 'out'}"]
    subprocess.run(command, cwd=workdir, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    # Read the figure with this checkout's store package (the only one that talks to MLflow).
    from lightyolo.store.client import Store

    frame = Store(f"sqlite:///{store}").runs_frame("lightyolo")
    return float(frame["metrics.train_images_per_s"].iloc[0])


@contextmanager
def busy_processes(count: int):
    """`count` processes spinning on a core each, for the duration of the block."""
    procs = [subprocess.Popen([sys.executable, "-c", SPIN]) for _ in range(count)]
    try:
        yield
    finally:
        for proc in procs:
            proc.kill()
            proc.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--baseline", type=Path, required=True, help="checkout of the code before the change")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--busy", type=int, default=2, help="spinning background processes in the loaded condition")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--train-images", type=int, default=96)
    parser.add_argument("overrides", nargs="*", help="more overrides for every job")
    args = parser.parse_args()

    job = [f"train.epochs={args.epochs}", f"dataset.num_train={args.train_images}", "dataset.num_val=32",
           "dataset.num_test=32", "bench.iters=1", "bench.warmup=0", *args.overrides]
    variants = {
        "old default": (args.baseline.resolve(), job, {}),
        "1 thread": (REPO, [*job, "train.threads=1"], {}),
        "new default": (REPO, job, {}),
    }
    results: dict[tuple[str, str], list[float]] = {}
    cache = Path(tempfile.mkdtemp(prefix="threads-bench-"))
    for condition, busy in (("idle", 0), ("loaded", args.busy)):
        with busy_processes(busy):
            load = os.getloadavg()[0]
            for round_ in range(args.rounds):
                for name, (checkout, overrides, env) in variants.items():
                    with tempfile.TemporaryDirectory() as tmp:
                        shapes = [f"dataset.root={cache / 'shapes'}"]  # generated once, shared
                        rate = run_job(checkout, overrides + shapes, env, Path(tmp))
                    results.setdefault((condition, name), []).append(rate)
                    print(f"{condition} (load {load:.1f}) round {round_ + 1} {name}: {rate:.1f} images/s", flush=True)

    print(f"\n| condition | variant | images/s (median of {args.rounds}) | / best |")
    print("|---|---|---|---|")
    for condition in ("idle", "loaded"):
        medians = {name: statistics.median(results[(condition, name)]) for name in variants}
        best = max(medians.values())
        for name, rate in medians.items():
            print(f"| {condition} | {name} | {rate:.1f} | {rate / best:.2f} |")


if __name__ == "__main__":
    main()
