"""What one grid cell costs this machine: wall and CPU minutes of a whole `lightyolo.run` cell.

    python benchmarks/cell_cost.py [OVERRIDE ...] [--cells c3/pan/conv ghost/pan/conv]
        [--seed 0] [--jobs 2] [--threads 1]

Each cell is a real `python -m lightyolo.run` (dataset, training, evaluation, in-run latency)
in its own subprocess, `--jobs` at a time, each with `train.threads=--threads
train.workers=1` (the share of the machine a joblib job of the README's grid gets), on the
lightweight sweep's recipe (`dataset=shapes_grid`) unless an override replaces it, into a
throwaway MLflow store. CPU time is the subprocess's and its reaped descendants' (the loader
workers), from `os.wait4`; other processes on shared cores inflate it far less than the wall
clock. "Machine min" is CPU minutes over the cores the cells run on (`--jobs` × `--threads`):
what a cell costs a machine of that many cores that the grid keeps busy.
`train.epochs=2` (an override) makes a quick check; the figures are per cell, not scaled.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


@dataclass
class Cell:
    """One cell to run: its group choices and what its subprocess used."""

    backbone: str
    neck: str
    operator: str
    wall_s: float = 0.0
    cpu_s: float = 0.0
    exit_code: int | None = None

    @property
    def name(self) -> str:
        return f"{self.backbone}/{self.neck}/{self.operator}"

    @property
    def slug(self) -> str:
        """The name as one path component: the cell's folder and log under the work dir."""
        return self.name.replace("/", "-")


def parse_cell(text: str) -> Cell:
    """`backbone/neck/operator` → Cell; anything else is refused with the expected form."""
    parts = text.split("/")
    if len(parts) != 3 or not all(parts):
        raise argparse.ArgumentTypeError(f"--cells {text!r}: expected backbone/neck/operator, e.g. c3/pan/conv")
    return Cell(*parts)


def command(cell: Cell, args: argparse.Namespace, work: Path) -> list[str]:
    """The `lightyolo.run` command line of `cell`, writing under `work`."""
    out = work / cell.slug
    return [
        sys.executable, "-m", "lightyolo.run", "dataset=shapes_grid",
        f"backbone={cell.backbone}", f"neck={cell.neck}", f"operator={cell.operator}",
        f"seed={args.seed}", f"train.threads={args.threads}", "train.workers=1",
        "experiment=cell_cost", f"mlflow.tracking_uri=sqlite:///{out}/mlflow.db",
        f"hydra.run.dir={out}", *args.overrides,
    ]


def run_cells(cells: list[Cell], args: argparse.Namespace, work: Path) -> None:
    """Run the cells `args.jobs` at a time; fill in each one's wall and CPU seconds and exit code."""
    pending, running = list(cells), {}
    while pending or running:
        while pending and len(running) < args.jobs:
            cell = pending.pop(0)
            log = open(work / f"{cell.slug}.log", "w")
            proc = subprocess.Popen(command(cell, args, work), cwd=REPO, stdout=log, stderr=subprocess.STDOUT)
            running[proc.pid] = (cell, proc, log, time.perf_counter())
        pid, status, usage = os.wait4(-1, 0)  # any child; its rusage includes its reaped children
        if pid not in running:
            continue
        cell, proc, log, start = running.pop(pid)
        log.close()
        proc.returncode = os.waitstatus_to_exitcode(status)  # reaped here, not by Popen
        cell.wall_s, cell.cpu_s = time.perf_counter() - start, usage.ru_utime + usage.ru_stime
        cell.exit_code = proc.returncode


def logged_map(cell: Cell, work: Path) -> float | None:
    """The cell's logged mAP50-95 (test split when the dataset has one), or None."""
    from lightyolo.store.client import Store

    runs = Store(f"sqlite:///{work / cell.slug}/mlflow.db").runs_frame("cell_cost")
    if not len(runs):
        return None
    column = f"metrics.{runs['tags.eval_split'].iloc[0]}/map50_95"  # store/schema.py's name
    return float(runs[column].iloc[0]) if column in runs else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cells", nargs="+", type=parse_cell,
                        default=[parse_cell("c3/pan/conv"), parse_cell("ghost/pan/conv")])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--jobs", type=int, default=2, help="cells at a time")
    parser.add_argument("--threads", type=int, default=1, help="torch threads per cell")
    parser.add_argument("overrides", nargs="*", help="Hydra overrides for every cell, e.g. train.epochs=2 (before --cells, or after --)")
    args = parser.parse_args()
    if args.jobs < 1 or args.threads < 1:
        parser.error(f"--jobs {args.jobs} --threads {args.threads}: expected both >= 1")
    cores = args.jobs * args.threads
    print(f"load average at start: {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores; "
          f"{args.jobs} cells at a time, {args.threads} thread(s) each")
    with tempfile.TemporaryDirectory(prefix="lightyolo-cell-cost-") as tmp:
        work = Path(tmp)
        run_cells(args.cells, args, work)
        failed = False
        for cell in args.cells:
            if cell.exit_code != 0:
                failed = True
                tail = (work / f"{cell.slug}.log").read_text().splitlines()[-5:]
                print(f"{cell.name}: exit {cell.exit_code}; its log ends:\n  " + "\n  ".join(tail))
                continue
            score = logged_map(cell, work)
            print(f"{cell.name} seed {args.seed}: wall {cell.wall_s / 60:5.1f} min, "
                  f"CPU {cell.cpu_s / 60:5.1f} min, machine {cell.cpu_s / 60 / cores:5.1f} min "
                  f"per cell on {cores} cores, mAP50-95 {score if score is None else f'{score:.3f}'}")
    print(f"load average at end: {os.getloadavg()[0]:.2f}")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
