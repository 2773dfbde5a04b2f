"""Issue 24's cases, reproduced through the CLIs against a source tree: one markdown row each.

    python benchmarks/reliability_cases.py --tree /path/to/a/checkout --work /tmp/cases-X

Every case runs `python -m lightyolo.<cli>` in subprocesses with PYTHONPATH=<tree> (so an older
checkout, e.g. `git archive <commit> | tar -x -C /tmp/before`, can be compared with this one),
on a small synthetic set (shapes, 16 train / 8 val / 8 test images at 64 px, one thread), on
coco128 for the image case, and on fresh SQLite stores under --work. It reads stores with this
checkout's `lightyolo.store`. What it prints is what was observed, nothing is assumed.
Budget: a few minutes on a loaded 2-core machine (each CLI start imports torch and MLflow).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import cv2
import torch

from lightyolo.store.client import Store
from lightyolo.store.health import StoreUnavailable

DOWN_SERVER_WAIT_S = 40  # how long the down-server case waits before calling it a hang


def tiny(work: Path, experiment: str, db: Path) -> list[str]:
    return [f"dataset.root={work / 'shapes'}", "dataset.num_train=16", "dataset.num_val=8", "dataset.num_test=8",
            "dataset.image_size=96", "train.img_size=64", "train.batch_size=8", "train.epochs=1",
            "train.workers=0", "train.threads=1", "eval.batch_size=8", "bench.warmup=1", "bench.iters=2",
            "bench.after_sweep=false", f"experiment={experiment}", f"mlflow.tracking_uri=sqlite:///{db}"]


class Cases:
    def __init__(self, tree: Path, work: Path, shared: Path) -> None:
        self.tree, self.work, self.shared = tree, work, shared
        self.env = {**os.environ, "PYTHONPATH": str(tree), "OMP_NUM_THREADS": "1", "HYDRA_FULL_ERROR": "0"}
        self.rows: list[tuple[str, str]] = []

    def popen(self, module: str, *args: str, log: str) -> subprocess.Popen:
        handle = open(self.work / f"{log}.log", "w")
        return subprocess.Popen([sys.executable, "-m", module, *args], cwd=self.work, env=self.env,
                                stdout=handle, stderr=subprocess.STDOUT, start_new_session=True,
                                preexec_fn=default_sigint)

    def cli(self, module: str, *args: str, timeout: float = 600) -> tuple[int | str, str, float]:
        started = time.monotonic()
        try:
            proc = subprocess.run([sys.executable, "-m", module, *args], cwd=self.work, env=self.env,
                                  capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            return "timeout", "", time.monotonic() - started
        return proc.returncode, proc.stderr, time.monotonic() - started

    def row(self, case: str, observed: str) -> None:
        self.rows.append((case, observed))
        print(f"| {case} | {observed} |", flush=True)


def default_sigint() -> None:
    """In a child before exec: SIGINT as a terminal sends it (a shell's background job inherits
    it ignored, and Python would keep ignoring it)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


# Two CLI launches forked from one process that imported the tree's lightyolo, released at
# the same instant (separate interpreters start seconds apart on a loaded machine).
RACER = """
import os, sys, time
from lightyolo.run import cli
read, write = os.pipe()
children = []
for side in "ab":
    pid = os.fork()
    if pid == 0:
        os.close(write)
        log = os.open(f"{sys.argv[1]}-{side}.log", os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
        os.dup2(log, 1); os.dup2(log, 2)
        os.read(read, 1)
        sys.argv = ["lightyolo.run", *sys.argv[2:], f"hydra.run.dir={sys.argv[1]}-{side}"]
        try:
            cli()
        except SystemExit as done:
            os._exit(done.code if isinstance(done.code, int) else 0)
        os._exit(0)
    children.append(pid)
time.sleep(0.5)
os.write(write, b"go")
codes = [os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) for pid in children]
print(codes)
"""


def error_shape(stderr: str) -> str:
    lines = [line for line in stderr.strip().splitlines() if line.strip()]
    if "Traceback" in stderr:
        return f"traceback ({len(lines)} lines, ends: {lines[-1][:90]!r})"
    return f"{len(lines)} line(s): {lines[-1][:110]!r}" if lines else "no message"


def runs(db: Path, experiment: str) -> list[dict]:
    try:
        return Store(f"sqlite:///{db}").runs_frame(experiment).to_dict("records")
    except (ValueError, StoreUnavailable):
        return []


def finished_count(db: Path, experiment: str) -> str:
    rows = runs(db, experiment)
    return f"{sum(r['mlflow_status'] == 'FINISHED' for r in rows)} FINISHED of {len(rows)} runs"


def wait_for(path_glob: tuple[Path, str], proc: subprocess.Popen, limit: float = 300) -> None:
    root, pattern = path_glob
    deadline = time.time() + limit
    while not list(root.glob(pattern)) and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)


def case_images(c: Cases) -> None:
    coco = c.shared / "data" / "coco128"
    scores = {}
    for name in ("original", "changed"):
        images, labels = c.work / name / "images" / "train", c.work / name / "labels" / "train"
        shutil.copytree(coco / "images" / "train2017", images)
        shutil.copytree(coco / "labels" / "train2017", labels)
        if name == "changed":
            for i, path in enumerate(sorted(images.glob("*.jpg"))[:16]):
                if i % 2 == 0:
                    path.write_bytes(path.read_bytes() + b"\x00camera trailer")
                else:
                    path.write_bytes(cv2.imencode(".png", cv2.imread(str(path)))[1].tobytes())
        db = c.work / f"{name}.db"
        c.cli("lightyolo.run", "dataset=coco128", f"dataset.root={c.work / name}", "dataset.train.images=images/train",
              "dataset.train.labels=labels/train", "dataset.val.images=images/train", "dataset.val.labels=labels/train",
              "dataset.cache_dir=null", f"dataset.names=[{','.join(str(i) for i in range(80))}]",
              f"model.weights={c.shared / 'weights' / 'yolov5n.state_dict.pt'}",
              "train.epochs=0", "train.img_size=320", "train.workers=0", "train.threads=1", "bench.warmup=1",
              "bench.iters=2", f"mlflow.tracking_uri=sqlite:///{db}", f"hydra.run.dir={c.work / name / 'out'}")
        (run,) = runs(db, "lightyolo")
        issues = run.get("tags.data_issues")
        scores[name] = f"{run.get('metrics.map50_95', float('nan')):.3f} (issues {issues if isinstance(issues, str) else 'none'})"
    c.row("1 coco128, 16 JPEGs with trailers / PNGs named .jpg: mAP50-95 at 320",
          f"untouched {scores['original']}, changed {scores['changed']}")


def case_race(c: Cases, trials: int = 3) -> None:
    seen = []
    for trial in range(trials):
        db = c.work / f"race{trial}.db"
        proc = subprocess.run([sys.executable, "-c", RACER, str(c.work / f"race{trial}"), *tiny(c.work, "race", db),
                               "seed=1"], cwd=c.work, env=c.env, capture_output=True, text=True)
        elsewhere = sum("running elsewhere" in (c.work / f"race{trial}-{s}.log").read_text() for s in "ab")
        seen.append(f"exit {proc.stdout.strip()}, {finished_count(db, 'race')}, {elsewhere} 'running elsewhere'")
    c.row(f"2 two launches of one cell released together ({trials} trials)", "; ".join(seen))


def case_hostile_config(c: Cases) -> None:
    victim = c.work / "victim.txt"
    config = {"backbone": {"_target_": "lightyolo.models.backbones.c3.C3Backbone"},
              "neck": {"_target_": "lightyolo.models.necks.pan.PANNeck"},
              "operator": {"_target_": "shutil.copyfile", "src": str(c.tree / "pyproject.toml"), "dst": str(victim)},
              "model": {"scale": "n"}, "train": {"img_size": 64}}
    (c.work / "hostile.yaml").write_text(json.dumps(config))
    # A state_dict with the two keys export reads before building (na=3, nc=80).
    torch.save({"model": {"head.anchors": torch.zeros(3, 3, 2), "head.m.0.bias": torch.zeros(255)}}, c.work / "best.pt")
    code, stderr, _ = c.cli("lightyolo.export", f"config={c.work / 'hostile.yaml'}", f"weights={c.work / 'best.pt'}")
    c.row("3 export config= whose operator is shutil.copyfile",
          f"exit {code}, file written: {victim.exists()}, {error_shape(stderr)}")


def case_signal(c: Cases, signum: int) -> None:
    name = signal.Signals(signum).name
    db = c.work / f"{name}.db"
    out = c.work / name
    args = [*tiny(c.work, name, db), "train.epochs=30", "train.eval_interval=30"]
    proc = c.popen("lightyolo.run", *args, f"hydra.run.dir={out}/first", log=name)
    wait_for((out, "first/weights/last.pt"), proc)
    time.sleep(0.5)
    proc.send_signal(signum)
    code = proc.wait()
    (cut,) = runs(db, name) or [{}]
    status = f"{cut.get('mlflow_status')}/{cut.get('tags.status')}"
    c.cli("lightyolo.run", *args, f"hydra.run.dir={out}/again")
    rows = runs(db, name)
    again = [r for r in rows if r["run_id"] != cut.get("run_id")]
    resumed = "resumed the run" if not again else f"started a new run ({len(rows)} runs)"
    steps = len(Store(f"sqlite:///{db}").metric_history(rows[0]["run_id"], "train/box_loss")) if rows else 0
    c.row(f"4 {name} during epoch 2+ of 30, then a rerun",
          f"exit {code}, run {status}; rerun {resumed}, from epoch {rows[0].get('tags.resumed_from_epoch', '-')}, "
          f"{steps} epoch metrics logged")


def case_down_server(c: Cases) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    code, stderr, seconds = c.cli("lightyolo.run", *tiny(c.work, "down", c.work / "x.db")[:-1],
                                  f"mlflow.tracking_uri=http://127.0.0.1:{port}", f"hydra.run.dir={c.work / 'down'}",
                                  timeout=DOWN_SERVER_WAIT_S)
    shown = f"still retrying after {seconds:.0f} s" if code == "timeout" else f"exit {code} after {seconds:.0f} s, {error_shape(stderr)}"
    c.row("5 a run against a tracking server that is down", shown)
    sweep = c.work / "down-sweep"
    code, stderr, seconds = c.cli("lightyolo.run", "-m", *tiny(c.work, "down", c.work / "x.db")[:-1], "seed=0,1",
                                  f"mlflow.tracking_uri=http://127.0.0.1:{port}", f"hydra.sweep.dir={sweep}",
                                  timeout=DOWN_SERVER_WAIT_S)
    cells = len(list(sweep.rglob("cell_result.json")))
    shown = f"still retrying after {seconds:.0f} s" if code == "timeout" else f"exit {code}, {cells} cells launched, {error_shape(stderr)}"
    c.row("5 a sweep against a tracking server that is down", shown)


def case_bad_values(c: Cases) -> None:
    for override in ("train.epochs=abc", "train.epochs=1.5", "train.lr0=fast", "train.img_size=0",
                     "train.epochs=-1", "backbone._target_=lightyolo.models.backbones.c3.NoSuch", "~backbone._target_"):
        db = c.work / "values.db"
        code, stderr, _ = c.cli("lightyolo.run", *tiny(c.work, "values", db), override,
                                f"hydra.run.dir={c.work / 'values'}")
        c.row(f"6 {override}", f"exit {code}, {error_shape(stderr)}")


def case_no_ground_truth(c: Cases) -> None:
    root = c.work / "empty_labels"
    images, labels = root / "images" / "train", root / "labels" / "train"
    images.mkdir(parents=True)
    labels.mkdir(parents=True)
    for path in sorted((c.shared / "data" / "coco128" / "images" / "train2017").glob("*.jpg"))[:4]:
        shutil.copy(path, images)
        (labels / f"{path.stem}.txt").write_text("")
    db = c.work / "nogt.db"
    code, stderr, _ = c.cli("lightyolo.run", "dataset=coco128", f"dataset.root={root}", "dataset.train.images=images/train",
                            "dataset.train.labels=labels/train", "dataset.val.images=images/train",
                            "dataset.val.labels=labels/train", "dataset.names=[a]", "dataset.cache_dir=null",
                            "train.epochs=0", "train.img_size=64", "train.workers=0", "train.threads=1",
                            f"mlflow.tracking_uri=sqlite:///{db}", f"hydra.run.dir={c.work / 'nogt'}")
    logged = [r.get("metrics.map50_95") for r in runs(db, "lightyolo")]
    c.row("6 every label file empty", f"exit {code}, mAP50-95 logged: {logged}, {error_shape(stderr)}")


def case_damaged_store(c: Cases) -> None:
    db = c.work / "damaged.db"
    c.cli("lightyolo.run", *tiny(c.work, "exp", db), f"hydra.run.dir={c.work / 'damaged'}")
    shutil.copy(db, c.work / "intact.db")
    db.write_bytes(b"")
    code, stderr, _ = c.cli("lightyolo.report", f"tracking_uri=sqlite:///{db}", f"out={c.work / 'reports'}")
    c.row("7 report on a store truncated to 0 bytes", f"exit {code}, store size after: {db.stat().st_size} bytes, "
                                                      f"{error_shape(stderr)}")
    data = bytearray((c.work / "intact.db").read_bytes())
    data[4096:12288] = os.urandom(8192)
    db.write_bytes(bytes(data))
    before = db.read_bytes()
    code, stderr, _ = c.cli("lightyolo.report", f"tracking_uri=sqlite:///{db}", "experiment=exp",
                            f"out={c.work / 'reports'}")
    c.row("7 report on a store with random bytes written into it",
          f"exit {code}, store changed: {db.read_bytes() != before}, {error_shape(stderr)}")


def case_disk_full(c: Cases) -> None:
    db = c.work / "full.db"
    out = c.work / "full"
    (out / "weights").mkdir(parents=True)
    (out / "weights" / "best.pt.tmp").symlink_to("/dev/full")  # writes there fail with ENOSPC
    code, stderr, _ = c.cli("lightyolo.run", *tiny(c.work, "full", db), f"hydra.run.dir={out}")
    (run,) = runs(db, "full") or [{}]
    left = [p.name for p in out.rglob("*.tmp")]
    c.row("7 disk full while writing a checkpoint", f"exit {code}, run {run.get('mlflow_status')}/{run.get('tags.status')}, "
                                                    f".tmp left: {left}, {error_shape(stderr)}")


def case_killed_sweep(c: Cases) -> None:
    db = c.work / "sweep.db"
    args = ["-m", *tiny(c.work, "sweep", db), "seed=0,1", "train.epochs=3", "train.eval_interval=3"]
    proc = c.popen("lightyolo.run", *args, f"hydra.sweep.dir={c.work / 'sweep1'}", log="sweep1")
    wait_for((c.work / "sweep1", "0/weights/last.pt"), proc)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    first = [r for r in runs(db, "sweep") if r.get("tags.kind") == "sweep"]
    c.cli("lightyolo.run", *args, f"hydra.sweep.dir={c.work / 'sweep2'}")
    rows = runs(db, "sweep")
    old = next(r for r in rows if r["run_id"] == first[0]["run_id"])
    new = [r["run_id"] for r in rows if r.get("tags.kind") == "sweep" and r["run_id"] != old["run_id"]]
    cells = [r for r in rows if r.get("tags.kind") != "sweep"]
    under_new = sum(r.get("tags.mlflow.parentRunId") in new for r in cells)
    c.row("8 sweep launcher killed, then the sweep rerun", f"old parent {old['mlflow_status']}; "
                                                           f"{under_new} of {len(cells)} cells under the new parent")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tree", type=Path, default=Path(__file__).resolve().parents[1])
    parser.add_argument("--work", type=Path, required=True)
    parser.add_argument("--shared", type=Path,
                        default=Path(os.environ.get("LIGHTYOLO_SHARED_DIR") or Path(__file__).resolve().parents[2] / "shared"))
    parser.add_argument("--only", nargs="*", default=None, help="case function names (e.g. case_race)")
    args = parser.parse_args()
    shutil.rmtree(args.work, ignore_errors=True)
    args.work.mkdir(parents=True)
    c = Cases(args.tree.resolve(), args.work.resolve(), args.shared.resolve())
    print(f"tree {c.tree}\n\n| case | observed |\n|---|---|", flush=True)
    cases = [case_images, case_race, case_hostile_config, lambda c: case_signal(c, signal.SIGINT),
             lambda c: case_signal(c, signal.SIGTERM), case_down_server, case_bad_values, case_no_ground_truth,
             case_damaged_store, case_disk_full, case_killed_sweep]
    for case in cases:
        name = getattr(case, "__name__", "")
        if args.only and name not in args.only and not (name == "<lambda>" and "case_signal" in args.only):
            continue
        try:
            case(c)
        except Exception as err:  # a case that cannot be observed says so and the table goes on
            c.row(name, f"could not be observed: {type(err).__name__}: {err}")


if __name__ == "__main__":
    main()
