"""The team setup end to end: a real `hydra/launcher=joblib hydra.launcher.n_jobs=2` sweep of
two tiny cells writing to `mlflow server` on PostgreSQL over HTTP (tests/servers.py). The
sweep is SIGKILLed once a cell has a checkpoint, launched again (the cut-off cell resumes,
nothing is lost or duplicated), launched a third time (everything is skipped), and the report reads the
server back. One module-scoped history, several tests reading it."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

from lightyolo.cell_result import read_results
from lightyolo.store.client import Store

from conftest import REPO

EXPERIMENT = "server-sweep"
EPOCHS = 3
CELLS = ("c3-pan-conv-s0", "c3-slim-conv-s0")
TINY = (
    "backbone=c3", "neck=pan,slim", f"train.epochs={EPOCHS}", "dataset.num_train=8",
    "dataset.num_val=4", "train.batch_size=8", "eval.batch_size=8", "bench.warmup=1",
    "bench.iters=2", "hydra/launcher=joblib", "hydra.launcher.n_jobs=2",
)


@dataclass(frozen=True)
class History:
    """What the three launches left: the server's URI, the root folder, which cells the kill
    caught with a checkpoint (`cut_off`) or already done (`done`), the later launches."""

    uri: str
    root: Path
    cut_off: tuple[str, ...]
    done: tuple[str, ...]
    cell_runs_before_skip: int
    resumed: subprocess.CompletedProcess
    skipped: subprocess.CompletedProcess

    def runs(self) -> pd.DataFrame:
        return Store(self.uri).runs_frame(EXPERIMENT)


def command(uri: str, root: Path, name: str) -> list[str]:
    return [
        sys.executable, "-m", "lightyolo.run", "-m", "-cd", str(REPO / "sweeps"), "-cn", "smoke",
        f"experiment={EXPERIMENT}", f"mlflow.tracking_uri={uri}", f"hydra.sweep.dir={root / name}",
        f"dataset.root={root / 'shapes'}", *TINY,
    ]


def launch(uri: str, root: Path, name: str) -> subprocess.CompletedProcess:
    return subprocess.run(command(uri, root, name), cwd=REPO, capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="module")
def history(tracking_server: str, tmp_path_factory: pytest.TempPathFactory) -> History:
    root = tmp_path_factory.mktemp("server_sweep")
    # 1: killed (the launcher and its joblib workers) once a cell is mid-training. Jobs are
    # numbered in grid order: job 0 is CELLS[0].
    proc = subprocess.Popen(
        command(tracking_server, root, "killed"), cwd=REPO,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )
    jobs = [root / "killed" / str(job) for job in range(len(CELLS))]

    def mid_training(job: Path) -> bool:
        return (job / "weights" / "last.pt").exists() and not (job / "cell_result.json").exists()

    deadline = time.time() + 400
    while not any(map(mid_training, jobs)) and proc.poll() is None and time.time() < deadline:
        time.sleep(0.1)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    cut_off = tuple(cell for cell, job in zip(CELLS, jobs) if mid_training(job))
    done = tuple(cell for cell, job in zip(CELLS, jobs) if (job / "cell_result.json").exists())
    assert cut_off, "no cell was mid-training when the sweep was killed"
    # 2: resumes what was cut off; 3: finds both cells completed.
    resumed = launch(tracking_server, root, "resumed")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    before_skip = len(cell_runs(Store(tracking_server).runs_frame(EXPERIMENT)))
    skipped = launch(tracking_server, root, "skipped")
    assert skipped.returncode == 0, skipped.stderr[-3000:]
    # The kill reached the workers too: nothing finished a cut-off cell in the old sweep.
    assert not any((job / "cell_result.json").exists() for cell, job in zip(CELLS, jobs) if cell in cut_off)
    return History(tracking_server, root, cut_off, done, before_skip, resumed, skipped)


def sweep_runs(runs: pd.DataFrame) -> pd.DataFrame:
    return runs[runs["tags.kind"] == "sweep"].sort_values("start_time")


def cell_runs(runs: pd.DataFrame) -> pd.DataFrame:
    return runs[runs["tags.kind"].isna()]


def test_every_cell_completes_once_and_the_cut_off_cell_resumes_its_run(history: History) -> None:
    runs = history.runs()
    cells = cell_runs(runs)
    completed = cells[cells["tags.status"] == "completed"]
    assert sorted(completed["run_name"]) == sorted(CELLS)  # none lost, none doubled
    assert (completed["mlflow_status"] == "FINISHED").all()
    for name in CELLS:
        mine = cells[cells["run_name"] == name]
        if name in history.cut_off or name in history.done:
            assert len(mine) == 1, mine[["run_name", "tags.status", "tags.error"]].to_string()  # the same run, continued
        else:  # killed before its first checkpoint: closed as failed, and run again
            assert len(mine) == 2 and sorted(mine["tags.status"]) == ["completed", "failed"]
    for name in history.cut_off:
        run = completed[completed["run_name"] == name].iloc[0]
        assert int(run["tags.resumed_from_epoch"]) > 0
        steps = [step for step, _ in Store(history.uri).metric_history(run["run_id"], "train/box_loss")]
        assert sorted(set(steps)) == list(range(1, EPOCHS + 1))

    sweeps = sweep_runs(runs)
    assert len(sweeps) == 2  # one parent per launch that trained; the skip-only one left none (issue 25)
    killed, resumed = sweeps.itertuples()
    # A cell is nested under the sweep that completed it (issue 24): the killed one for the
    # runs it finished, the second for a cell it resumed or started again.
    for name in CELLS:
        run = completed[completed["run_name"] == name].iloc[0]
        completed_by = killed if name in history.done else resumed
        assert run["tags.mlflow.parentRunId"] == completed_by.run_id
    # Its launcher died before closing it; the next sweep ended it, with a count (issue 24).
    assert killed.mlflow_status == "FAILED"
    assert sweeps.iloc[0]["tags.error"].startswith("launcher cut off: ")
    assert resumed.mlflow_status == "FINISHED"
    assert "2/2 cells ok" in history.resumed.stdout


def test_a_launch_after_completion_skips_both_cells_and_leaves_no_empty_sweep_run(history: History) -> None:
    statuses = [r.status for r in read_results(history.root / "skipped")]
    assert statuses == ["skipped", "skipped"], history.skipped.stdout[-2000:]
    assert len(cell_runs(history.runs())) == history.cell_runs_before_skip  # none started
    # Nothing trained: its parent run is deleted, not left empty beside the real sweeps (issue 25)
    assert str(history.root / "skipped") not in set(sweep_runs(history.runs())["params.sweep_dir"])
    assert "2/2 cells ok" in history.skipped.stdout and all(name in history.skipped.stdout for name in CELLS)
    assert "nothing to train: every cell had completed" in history.skipped.stdout
    assert f"{history.uri}/#/experiments/" in history.skipped.stdout  # the UI link


def test_the_report_reads_the_server_back_and_names_what_it_reports_on(
    history: History, tmp_path: Path
) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "lightyolo.report", f"experiment={EXPERIMENT}",
         f"tracking_uri={history.uri}", f"out={tmp_path / 'reports'}"],
        cwd=tmp_path, capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    variants = pd.read_csv(tmp_path / "reports" / EXPERIMENT / "ablation.csv")
    assert sorted(variants["neck"]) == ["pan", "slim"]  # the cells, not the sweeps

    # One report run, named after what it reports on: under the sweep when every cell run came
    # from one sweep, else at the top, named after the experiment (issue 25).
    runs = history.runs()
    reports = runs[runs["tags.kind"] == "report"]
    assert len(reports) == 1
    report = reports.iloc[0]
    cell_sweeps = set(cell_runs(runs)["tags.sweep_id"].dropna())
    client = MlflowClient(history.uri)
    on_report = {a.path for a in client.list_artifacts(report["run_id"], "report")}
    assert "report/ablation.md" in on_report and "report/ablation.csv" in on_report
    if len(cell_sweeps) == 1:  # its files land on that sweep's run too
        (sweep,) = sweep_runs(runs)[sweep_runs(runs)["tags.sweep_id"] == cell_sweeps.pop()].itertuples()
        assert (report["tags.mlflow.parentRunId"], report["run_name"]) == (sweep.run_id, f"report-{sweep.run_name}")
        assert "report/ablation.md" in {a.path for a in client.list_artifacts(sweep.run_id, "report")}
    else:
        assert pd.isna(report.get("tags.mlflow.parentRunId")) and report["run_name"] == f"report-{EXPERIMENT}"


def test_a_report_on_a_server_that_does_not_answer_says_so_in_one_line(tmp_path: Path) -> None:
    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        uri = f"http://127.0.0.1:{sock.getsockname()[1]}"
    proc = subprocess.run(
        [sys.executable, "-m", "lightyolo.report", f"tracking_uri={uri}", f"out={tmp_path}"],
        cwd=tmp_path, capture_output=True, text=True, timeout=300,
        env={**os.environ, "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0"},  # fail now, not in minutes
    )
    assert proc.returncode == 1
    (line,) = proc.stderr.strip().splitlines()
    assert line.startswith(f"lightyolo.report: cannot read the MLflow store at {uri}: ")
