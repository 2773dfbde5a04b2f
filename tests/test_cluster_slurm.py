"""A grid on a real SLURM cluster (issue 28, docs/cluster.md): the single-node cluster that
`.ci/run` starts (.ci/slurm.sh: slurmctld, slurmd, munged; the partition in
LIGHTYOLO_TEST_SLURM) and a PostgreSQL-backed `mlflow server --serve-artifacts` whose artifact
destination is outside every working directory (tests/servers.py).

Two tiny cells go through `hydra/launcher=submitit_slurm` as one job array:
- job 0's time limit is cut, once its first epoch is logged, to one that ends before its
  training does (`scontrol update TimeLimit=…`, SLURM's minutes): SLURM sends SIGUSR2
  `signal_delay_s` before the limit, the cell stops at the next step with its last.pt saved,
  submitit requeues the job, and the requeued job resumes the same MLflow run after its last
  whole epoch and completes. SLURM holds a requeued job for about two minutes; the test lifts
  the hold (`scontrol update StartTime=now`, as an admin can) and gives the job its limit
  back, so that one requeue is seen rather than one per minute.
- job 1 is `scancel`led mid-training: no requeue; the sweep's summary says FAILED.
The cells' working directories are deleted after each sweep. A rerun of the sweep trains only
the cancelled cell, from the last.pt in the store (its working directory is gone). Then, from
another directory and with only the tracking URI: export, the bench stage as a SLURM job of
its own, and the report.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

from lightyolo.cell_result import read_results
from lightyolo.store.schema import CHECKPOINT_SOURCE_TAG
from lightyolo.store.client import Store

from conftest import REPO

SLURM_ENV = "LIGHTYOLO_TEST_SLURM"  # the partition; .ci/run sets it once its cluster is up
EXPERIMENT = "slurm-grid"
# 0.6-1 s each: the limit's SIGUSR2 comes 30-70 s into job 0 (limit set 2 min out once an
# epoch is logged, signal 90 s before it, slurmctld checks every 30 s), mid-training. At 45
# epochs an idle machine finished the cell in 30 s, before the signal: no requeue to test.
EPOCHS = 120
CELLS = ("c3-pan-conv-s0", "c3-slim-conv-s0")  # job 0: timed out and requeued; job 1: cancelled
CANCEL_AFTER = EPOCHS - 3  # epochs job 1 logs before it is cancelled
SWEEP_TIMEOUT_S = 420
TIMEOUT_MIN, SIGNAL_DELAY_S = 5, 90  # the array's limit; SIGUSR2 comes this long before a limit

pytestmark = pytest.mark.skipif(
    not os.environ.get(SLURM_ENV) or shutil.which("sbatch") is None,
    reason=f"{SLURM_ENV} is not set: no SLURM cluster for the cluster tests (.ci/run starts one)",
)


@dataclass
class Sweep:
    """One launch of the grid: its exit code and output, and what the test saw of its jobs."""

    code: int
    stdout: str
    results: list = field(default_factory=list)  # its cells' CellResults, read before their dirs go
    requeues: int = 0  # holds the test lifted on job 0 after submitit requeued it
    cancelled: bool = False
    seen: list[str] = field(default_factory=list)  # squeue lines, for a failure's message


def command(uri: str, root: Path, name: str, job_name: str) -> list[str]:
    return [
        sys.executable, "-m", "lightyolo.run", "-m", "-cd", str(REPO / "sweeps"), "-cn", "smoke",
        f"experiment={EXPERIMENT}", f"mlflow.tracking_uri={uri}", f"hydra.sweep.dir={root / name}",
        f"dataset.root={root / 'shapes'}", "backbone=c3", "neck=pan,slim", f"train.epochs={EPOCHS}",
        "dataset.num_train=16", "dataset.num_val=8", "train.batch_size=8", "eval.batch_size=8",
        "train.threads=1", "train.workers=0", "bench.warmup=1", "bench.iters=2",
        "bench.after_sweep=false",  # the bench stage is a job of its own (below, docs/cluster.md)
        "hydra/launcher=submitit_slurm", f"hydra.launcher.partition={os.environ[SLURM_ENV]}",
        f"hydra.launcher.name={job_name}", f"hydra.launcher.timeout_min={TIMEOUT_MIN}",
        f"hydra.launcher.signal_delay_s={SIGNAL_DELAY_S}", "hydra.launcher.max_num_timeout=3",
        "hydra.launcher.cpus_per_task=1", "hydra.launcher.mem_gb=2",
    ]


def squeue(job_name: str) -> dict[str, tuple[str, str, str, int]]:
    """Array index → (job id, state, reason, seconds run) of the jobs named `job_name`:
    `{"0": ("123_0", "R", "None", 42)}`."""
    out = subprocess.run(["squeue", "-h", "--name", job_name, "-o", "%i|%t|%r|%M"],
                         capture_output=True, text=True, timeout=30).stdout
    jobs = {}
    for line in out.split():
        job_id, state, reason, elapsed = line.split("|")
        seconds = sum(int(part) * 60**i for i, part in enumerate(reversed(elapsed.replace("-", ":").split(":"))))
        jobs[job_id.rpartition("_")[2]] = (job_id, state, reason, seconds)
    return jobs


def scontrol_update(job_id: str, *settings: str) -> None:
    subprocess.run(["scontrol", "update", f"jobid={job_id}", *settings], check=True, timeout=30)


def logged_epochs(client: MlflowClient, uri: str, run_name: str) -> int:
    experiment = client.get_experiment_by_name(EXPERIMENT)
    if experiment is None:
        return 0
    runs = client.search_runs([experiment.experiment_id], f"attributes.run_name = '{run_name}'")
    return max((len(Store(uri).metric_history(r.info.run_id, "train/box_loss")) for r in runs), default=0)


def run_sweep(uri: str, root: Path, name: str, *, time_out_job0: bool, cancel_job1: bool) -> Sweep:
    """Launch the grid from `root/launch`, act on its jobs as the scenario says, wait for it."""
    job_name = f"lightyolo-test-{uuid.uuid4().hex[:8]}"
    launch_dir = root / "launch"
    launch_dir.mkdir(exist_ok=True)
    log = root / f"{name}.log"
    with open(log, "w") as out:
        proc = subprocess.Popen(command(uri, root, name, job_name), cwd=launch_dir, stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True)
    sweep = Sweep(code=-1, stdout="")
    client = MlflowClient(uri)
    timed_out, deadline = False, time.time() + SWEEP_TIMEOUT_S
    try:
        while proc.poll() is None and time.time() < deadline:
            jobs = squeue(job_name)
            sweep.seen.append(repr(sorted(jobs.values())))
            job0 = jobs.get("0", ("", "", "", 0))
            if time_out_job0 and not timed_out and job0[1] == "R" and logged_epochs(client, uri, CELLS[0]) >= 1:
                # A limit a minute or more away, its SIGUSR2 due now: the cell is mid-training
                # with a last.pt, and far from SLURM's SIGTERM at the limit.
                scontrol_update(job0[0], f"TimeLimit={job0[3] // 60 + 2}")
                timed_out = True
            if job0[2] == "BeginTime":  # requeued by submitit, held by SLURM
                scontrol_update(job0[0], "StartTime=now", f"TimeLimit={TIMEOUT_MIN}")
                sweep.requeues += 1
            if cancel_job1 and not sweep.cancelled and "1" in jobs \
                    and logged_epochs(client, uri, CELLS[1]) >= CANCEL_AFTER:
                subprocess.run(["scancel", jobs["1"][0]], check=True, timeout=30)
                sweep.cancelled = True
            time.sleep(1)
    finally:
        if proc.poll() is None:
            subprocess.run(["scancel", "--name", job_name], timeout=30)
            proc.kill()
        proc.wait()
    sweep.code, sweep.stdout = proc.returncode, log.read_text()
    assert time.time() < deadline, f"sweep {name} did not end in {SWEEP_TIMEOUT_S} s:\n{sweep.stdout[-3000:]}"
    sweep.results = read_results(root / name)
    for job in ("0", "1"):  # the working directories are a cache: gone once the cells end
        shutil.rmtree(root / name / job, ignore_errors=True)
    return sweep


@dataclass(frozen=True)
class Grid:
    uri: str
    root: Path
    first: Sweep
    rerun: Sweep

    def cell_runs(self) -> pd.DataFrame:
        runs = Store(self.uri).runs_frame(EXPERIMENT)
        return runs[runs["tags.kind"].isna()]


@pytest.fixture(scope="module")
def grid(tracking_server: str, tmp_path_factory: pytest.TempPathFactory) -> Grid:
    root = tmp_path_factory.mktemp("slurm_grid")
    first = run_sweep(tracking_server, root, "first", time_out_job0=True, cancel_job1=True)
    rerun = run_sweep(tracking_server, root, "rerun", time_out_job0=False, cancel_job1=False)
    return Grid(tracking_server, root, first, rerun)


def test_the_timed_out_cell_is_requeued_and_resumes_after_its_last_epoch(grid: Grid) -> None:
    assert grid.first.requeues >= 1, "\n".join(grid.first.seen[-20:]) + grid.first.stdout[-3000:]
    runs = grid.cell_runs()
    mine = runs[runs["run_name"] == CELLS[0]]
    assert len(mine) == 1, mine[["run_name", "tags.status", "tags.error"]].to_string()  # the same run, continued
    run = mine.iloc[0]
    assert (run["mlflow_status"], run["tags.status"]) == ("FINISHED", "completed")
    assert int(run["tags.resumed_from_epoch"]) > 0
    steps = [step for step, _ in Store(grid.uri).metric_history(run["run_id"], "train/box_loss")]
    assert steps == list(range(1, EPOCHS + 1))  # each epoch once, none lost


def test_the_cancelled_cell_is_failed_in_the_summary_and_a_rerun_trains_only_it(grid: Grid) -> None:
    assert grid.first.cancelled
    assert grid.first.code == 1, grid.first.stdout[-3000:]
    by_cell = {r.cell.split(" #")[0]: r for r in grid.first.results}
    assert by_cell[CELLS[0]].status == "completed"
    assert by_cell[CELLS[1]].status == "failed" and by_cell[CELLS[1]].error.startswith("interrupted: SIGTERM")
    assert "1/2 cells ok" in grid.first.stdout

    assert grid.rerun.code == 0, grid.rerun.stdout[-3000:]
    assert {r.cell.split(" #")[0]: r.status for r in grid.rerun.results} == {CELLS[0]: "skipped", CELLS[1]: "completed"}
    runs = grid.cell_runs()
    mine = runs[runs["run_name"] == CELLS[1]]
    assert len(mine) == 1, mine[["run_name", "tags.status", "tags.error"]].to_string()  # the cancelled run, continued
    run = mine.iloc[0]
    assert run["tags.status"] == "completed"
    assert run[f"tags.{CHECKPOINT_SOURCE_TAG}"] == "store"  # its working directory was deleted
    assert int(run["tags.resumed_from_epoch"]) >= CANCEL_AFTER
    steps = [step for step, _ in Store(grid.uri).metric_history(run["run_id"], "train/box_loss")]
    assert steps == list(range(1, EPOCHS + 1))


def test_export_bench_and_report_work_from_elsewhere_with_only_the_tracking_uri(grid: Grid, tmp_path: Path) -> None:
    assert not any((grid.root / sweep / job).exists() for sweep in ("first", "rerun") for job in ("0", "1"))
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    runs = grid.cell_runs()
    run_ids = list(runs["run_id"])

    def cli(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", *args], cwd=elsewhere, capture_output=True, text=True, timeout=300)

    exported = cli("lightyolo.export", f"run_id={run_ids[0]}", f"tracking_uri={grid.uri}")
    assert exported.returncode == 0, exported.stderr[-3000:]
    # The bench stage as a job of its own (never inside a training job), as docs/cluster.md says.
    bench = subprocess.run(
        ["sbatch", "--wait", f"--partition={os.environ[SLURM_ENV]}", "--cpus-per-task=1", "--time=5",
         f"--output={elsewhere / 'bench.log'}",
         f"--wrap={sys.executable} -m lightyolo.bench experiment={EXPERIMENT} tracking_uri={grid.uri} "
         "'runtimes=[torch]' rounds=2 warmup=1 iters=2"],
        cwd=elsewhere, capture_output=True, text=True, timeout=300,
    )
    assert bench.returncode == 0, (elsewhere / "bench.log").read_text()[-3000:]
    report = cli("lightyolo.report", f"experiment={EXPERIMENT}", f"tracking_uri={grid.uri}", f"out={elsewhere / 'reports'}")
    assert report.returncode == 0, report.stderr[-3000:]

    client = MlflowClient(grid.uri)
    for run_id in run_ids:
        stored = {a.path for a in client.list_artifacts(run_id, "weights")} | {a.path for a in client.list_artifacts(run_id)}
        assert {"weights/best.pt", "weights/last.pt", "config.yaml"} <= stored
    assert "export/model.onnx" in {a.path for a in client.list_artifacts(run_ids[0], "export")}
    benched = Store(grid.uri).runs_frame(EXPERIMENT).set_index("run_id")
    assert all(any(c.startswith("metrics.bench/") and pd.notna(benched.at[r, c]) for c in benched.columns) for r in run_ids)
    variants = pd.read_csv(elsewhere / "reports" / EXPERIMENT / "ablation.csv")
    assert sorted(variants["neck"]) == ["pan", "slim"]
