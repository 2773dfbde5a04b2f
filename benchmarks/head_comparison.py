"""YOLOv5's anchor head vs the anchor-free v8 head on c3/pan/conv, on the grid recipe: ΔmAP with its CI and the latency cost.

Trains c3/pan/conv with `head=v5` and `head=v8` on the lightweight grid's recipe
(conf/dataset/shapes_grid.yaml: 800 train / 200 val / 500 test synthetic images, 60 epochs,
scale n, 128 px), 3 seeds each, in one MLflow experiment; the sweep's bench stage then times
both cells interleaved on PyTorch and ONNX Runtime (CPU, 1 thread, process CPU time). Each head
trains with its own loss (conf/head/v8.yaml carries YOLOv8's gains); everything else is the
grid recipe, untouched: the best epoch is chosen on val, mAP is reported on test, and nothing
here was tuned on either. Prints the report's head comparison: the one-factor table (ΔmAP50-95
with its 95 % CI over the paired seeds, p, the latency per runtime with its CI and the
speed-up) and the line naming each head's loss.

Cost: 6 cells of about 15 CPU min each at one thread (benchmarks/cell_cost.py measured 14.7
for c3/pan/conv/v5; v8's head adds ~40 % of the GFLOPs), so about an hour of the shared 2-core
machine with jobs=2. Extra key=value arguments go to every cell (e.g. a tiny budget to check
the script: `train.epochs=1 dataset.num_train=16 dataset.num_val=8 dataset.num_test=8`).

    PYTHONPATH=. python benchmarks/head_comparison.py [store=heads.db] [experiment=heads] [seeds=0,1,2] [jobs=2] [out=reports] [key=value ...]
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
OWN_KEYS = ("store", "experiment", "seeds", "jobs", "out")


def sweep_command(options: dict[str, str], extra: list[str]) -> list[str]:
    """The Hydra multirun of the 2 heads × seeds on c3/pan/conv with the grid recipe."""
    store = Path(options.get("store", "heads.db")).resolve()
    jobs = int(options.get("jobs", 2))
    launcher = [f"hydra/launcher=joblib", f"hydra.launcher.n_jobs={jobs}"] if jobs > 1 else []
    return [
        sys.executable, "-m", "lightyolo.run", "-m", "dataset=shapes_grid",
        "backbone=c3", "neck=pan", "operator=conv", "head=v5,v8", f"seed={options.get('seeds', '0,1,2')}",
        f"experiment={options.get('experiment', 'heads')}", f"mlflow.tracking_uri=sqlite:///{store}",
        "train.threads=1", "train.workers=0", *launcher, *extra,
    ]


def head_comparison(markdown: str) -> str:
    """The report's lines about the head: the Heads convention and the head's one-factor table."""
    lines = markdown.splitlines()
    kept = [line for line in lines if line.startswith("- **Heads**")]
    start = next((i for i, line in enumerate(lines) if line.startswith("### Effect of the head")), None)
    if start is None:
        return "\n".join(kept + ["(no head comparison in the report: did both heads complete?)"])
    end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith("#")), len(lines))
    return "\n".join(kept + [""] + lines[start:end]).rstrip()


def main(argv: list[str]) -> int:
    options = dict(a.split("=", 1) for a in argv if a.split("=", 1)[0] in OWN_KEYS)
    extra = [a for a in argv if a.split("=", 1)[0] not in OWN_KEYS]
    sweep = sweep_command(options, extra)
    print("sweep:", " ".join(sweep[1:]), flush=True)
    if subprocess.run(sweep, cwd=REPO).returncode != 0:
        print("the sweep failed (see its output above)", file=sys.stderr)
        return 1
    experiment = options.get("experiment", "heads")
    store = Path(options.get("store", "heads.db")).resolve()
    out = Path(options.get("out", "reports")).resolve()
    report = [sys.executable, "-m", "lightyolo.report", f"experiment={experiment}",
              f"tracking_uri=sqlite:///{store}", "baseline=c3/pan/conv", f"out={out}"]
    if subprocess.run(report, cwd=REPO).returncode != 0:
        return 1
    print("\n" + head_comparison((out / experiment / "ablation.md").read_text(encoding="utf-8")))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
