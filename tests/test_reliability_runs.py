"""Runs that are never silently wrong and never hijacked (issue 24, cases 3-8), on real files,
real SQLite stores, real processes and real signals."""

from __future__ import annotations

from collections.abc import Sequence

import hashlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from lightyolo import export, pipeline
from lightyolo.bench import __main__ as bench_cli
from lightyolo.report import cli as report_cli
from lightyolo.settings import resolve
from lightyolo.train.checkpoint import CheckpointWriteError, save_checkpoint
from lightyolo.train.interrupt import GracefulStop, TrainingInterrupted
from lightyolo.store.client import Store
from lightyolo.store.health import StoreUnavailable
from lightyolo.store.runs import RunTracker

from cli_processes import FORK, cli_child
from conftest import COCO128, REPO, compose_config, tiny_overrides

# --- 3. a run's config.yaml is data, not code --------------------------------------------


def _hostile_config(tmp_path: Path, victim: Path) -> Path:
    """A run's resolved config whose operator is `shutil.copyfile` with arguments (the issue's)."""
    config = resolve(compose_config(tiny_overrides(tmp_path))).config
    config["operator"] = {"_target_": "shutil.copyfile", "src": str(REPO / "pyproject.toml"), "dst": str(victim)}
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def test_export_refuses_a_config_file_with_an_unregistered_target_before_importing_it(tmp_path, capsys):
    victim = tmp_path / "written-by-the-config.txt"
    config = _hostile_config(tmp_path, victim)
    weights = tmp_path / "best.pt"
    weights.write_bytes(b"never read")

    code = export.main([f"config={config}", f"weights={weights}", f"out={tmp_path / 'm.onnx'}"])

    (line,) = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and not victim.exists()
    assert line.startswith(f"lightyolo.export: {config}: operator `_target_` 'shutil.copyfile' is not a registered operator")
    assert "refused without importing it" in line


def test_export_and_bench_refuse_a_stored_run_whose_config_yaml_names_an_unregistered_target(tmp_path, capsys):
    victim = tmp_path / "written-by-the-config.txt"
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    run = RunTracker.start(Store(uri), "hostile", run_name="c3-pan-conv-s0", tags={"status": "completed"}, params={})
    run.log_artifact(_hostile_config(tmp_path, victim))
    (tmp_path / "weights").mkdir()
    (tmp_path / "weights" / "best.pt").write_bytes(b"never read")
    run.log_artifact(tmp_path / "weights" / "best.pt", "weights")
    run.finish("completed")

    code = export.main([f"run_id={run.run_id}", f"tracking_uri={uri}", f"out={tmp_path / 'm.onnx'}"])
    bench_code = bench_cli.main(["experiment=hostile", f"tracking_uri={uri}", "runtimes=torch", "rounds=1"])

    err = capsys.readouterr().err
    assert (code, bench_code) == (2, 2) and not victim.exists()
    assert f"run {run.run_id} config.yaml: operator `_target_` 'shutil.copyfile' is not a registered operator" in err
    assert "Traceback" not in err


# --- 4. SIGINT / SIGTERM keep the progress -------------------------------------------------


def _signal_run(tmp_path: Path, epochs: int, signals: list[int], extra: Sequence[str] = ()) -> tuple[int, str, str]:
    """A CLI run (with `extra` overrides) in a process of its own; `signals` are sent once its
    first last.pt exists. Returns (exit code, log, tracking URI)."""
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    out = tmp_path / "outputs" / "first"
    argv = [*tiny_overrides(tmp_path), f"train.epochs={epochs}", f"train.eval_interval={epochs}",
            "train.threads=1", f"hydra.run.dir={out}", *extra]
    go = FORK.Event()
    child = FORK.Process(target=cli_child, args=(argv, tmp_path, tmp_path / "first.log", go))
    child.start()
    go.set()
    deadline = time.time() + 180
    while not (out / "weights" / "last.pt").exists() and time.time() < deadline and child.is_alive():
        time.sleep(0.05)
    for signum in signals:
        os.kill(child.pid, signum)
        time.sleep(0.05)
    child.join(timeout=180)
    return child.exitcode, (tmp_path / "first.log").read_text(), uri


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_stops_training_resumably_and_a_rerun_continues_without_logging_an_epoch_twice(tmp_path, signum):
    epochs = 5
    code, text, uri = _signal_run(tmp_path, epochs, [signum])

    assert code == 128 + signum, text[-3000:]
    assert text.strip().splitlines()[-1].startswith("interrupted: ")
    (cut,) = Store(uri).runs_frame("lightyolo").to_dict("records")
    assert (cut["mlflow_status"], cut["tags.status"]) == ("KILLED", "interrupted")
    logged = [step for step, _ in Store(uri).metric_history(cut["run_id"], "train/box_loss")]
    assert 1 <= len(logged) < epochs

    resumed = pipeline.run(compose_config(tiny_overrides(tmp_path) + [f"train.epochs={epochs}",
                                                                      f"train.eval_interval={epochs}"]))

    assert (resumed.status, resumed.run_id) == ("completed", cut["run_id"])
    (done,) = Store(uri).runs_frame("lightyolo").to_dict("records")
    assert int(done["tags.resumed_from_epoch"]) == len(logged)  # from the last whole epoch
    steps = [step for step, _ in Store(uri).metric_history(done["run_id"], "train/box_loss")]
    assert steps == list(range(1, epochs + 1))  # no epoch logged twice, none lost


def test_the_first_signal_waits_for_the_next_step_and_a_second_one_aborts_at_once():
    before = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)
    with GracefulStop() as stop:
        os.kill(os.getpid(), signal.SIGINT)  # a real signal to this process: noted, nothing raised
        assert stop.signum == signal.SIGINT
        with pytest.raises(TrainingInterrupted, match="SIGINT during epoch 3"):
            stop.check(epoch=2)  # the loop's next step
        with pytest.raises(KeyboardInterrupt, match="SIGTERM again: aborted at once"):
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(1)  # never reached: the handler raises in this frame
    assert (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)) == before  # restored after training


def test_a_double_sigint_exits_130_and_a_rerun_resumes_the_run(tmp_path):
    epochs = 30
    code, text, uri = _signal_run(tmp_path, epochs, [signal.SIGINT, signal.SIGINT])

    assert code == 130, text[-3000:]
    assert text.strip().splitlines()[-1].startswith("interrupted: ")
    (cut,) = Store(uri).runs_frame("lightyolo").to_dict("records")
    resumed = pipeline.run(compose_config(tiny_overrides(tmp_path) + [f"train.epochs={epochs}",
                                                                      f"train.eval_interval={epochs}"]))
    assert (resumed.status, resumed.run_id) == ("completed", cut["run_id"])
    steps = [step for step, _ in Store(uri).metric_history(cut["run_id"], "train/box_loss")]
    assert steps == list(range(1, epochs + 1))


# --- 5. a store that is down fails fast, in one line ---------------------------------------


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]  # nothing listens there once the socket is closed


def test_a_run_against_a_server_that_is_down_stops_with_one_line_naming_it(tmp_path):
    uri = f"http://127.0.0.1:{_closed_port()}"
    cfg = compose_config(tiny_overrides(tmp_path) + [f"mlflow.tracking_uri={uri}"])
    started = time.monotonic()
    with pytest.raises(StoreUnavailable, match=rf"^MLflow tracking store {uri} does not answer \(connection refused"):
        pipeline.run(cfg, output_dir=tmp_path / "out")
    assert time.monotonic() - started < 60  # one try, no retries (it used to retry for 274 s)
    assert not (tmp_path / "shapes").exists()  # checked before the data is read


def test_a_sweep_against_a_server_that_is_down_launches_no_cell(tmp_path):
    uri = f"http://127.0.0.1:{_closed_port()}"
    sweep_dir = tmp_path / "multirun"
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "lightyolo.run", "-m", *tiny_overrides(tmp_path)[:-1], "seed=0,1",
         f"mlflow.tracking_uri={uri}", f"hydra.sweep.dir={sweep_dir}"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert proc.stderr.strip().splitlines()[-1].startswith(f"error: MLflow tracking store {uri} does not answer")
    assert proc.stderr.strip().endswith("no cell was launched")
    assert not list(sweep_dir.rglob("cell_result.json")) and "Traceback" not in proc.stderr


# --- 6. every value checked up front ---------------------------------------------------------


@pytest.mark.parametrize(("override", "message"), [
    ("train.epochs=abc", "train.epochs: 'abc', expected an integer >= 0"),
    ("train.epochs=1.5", "train.epochs: 1.5, expected an integer >= 0"),
    ("train.epochs=-1", "train.epochs: -1, expected an integer >= 0"),
    ("train.lr0=fast", "train.lr0: 'fast', expected a number > 0"),
    ("train.img_size=0", "train.img_size: 0, expected a positive multiple of 32 (the largest stride)"),
    ("train.batch_size=0", "train.batch_size: 0, expected an integer >= 1"),
    ("eval.conf_thres=1.5", "eval.conf_thres: 1.5, expected a number >= 0 and <= 1"),
    ("eval.iou_thres=high", "eval.iou_thres: 'high', expected a number >= 0 and <= 1"),
    ("train.augment.mosaic=2", "train.augment.mosaic: 2, expected a number >= 0 and <= 1"),
    ("~backbone._target_", "backbone: the config node has no `_target_`"),
])
def test_a_bad_value_is_refused_up_front_in_one_line_naming_the_key(tmp_path, override, message):
    with pytest.raises(ValueError) as refused:
        resolve(compose_config(tiny_overrides(tmp_path) + [override]))
    assert str(refused.value).startswith(message) and "\n" not in str(refused.value)


def test_the_cli_refuses_a_bad_epoch_count_in_one_line_before_any_run(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-m", "lightyolo.run", *tiny_overrides(tmp_path), "train.epochs=abc",
                           f"hydra.run.dir={tmp_path / 'out'}"],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines() == ["error: train.epochs: 'abc', expected an integer >= 0"]
    assert not (tmp_path / "mlflow.db").exists()


@pytest.mark.shared("data/coco128/images/train2017")
def test_a_dataset_without_any_ground_truth_box_is_refused_not_scored_0(tmp_path):
    images, labels = tmp_path / "data" / "images" / "train", tmp_path / "data" / "labels" / "train"
    images.mkdir(parents=True)
    labels.mkdir(parents=True)
    for stem in ("000000000009", "000000000025"):
        shutil.copy(COCO128 / "images" / "train2017" / f"{stem}.jpg", images)
        (labels / f"{stem}.txt").write_text("")  # every label file empty
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    cfg = compose_config([
        "dataset=coco128", f"dataset.root={tmp_path / 'data'}", "dataset.train.images=images/train",
        "dataset.train.labels=labels/train", "dataset.val.images=images/train", "dataset.val.labels=labels/train",
        "dataset.names=[a]", "dataset.cache_dir=null", "train.epochs=0", "train.img_size=64",
        "train.workers=0", f"mlflow.tracking_uri={uri}", "experiment=no_boxes",
    ])
    with pytest.raises(ValueError, match=r"^dataset coco128: no ground-truth box in its val split \(2 images"):
        pipeline.run(cfg, output_dir=tmp_path / "out")
    (run,) = Store(uri).runs_frame("no_boxes").to_dict("records")
    assert run["mlflow_status"] == "FAILED" and "metrics.map50_95" not in run


# --- 7. readers never create or write a store; a failed write leaves no .tmp ----------------


def _store_with_a_run(tmp_path: Path) -> Path:
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    RunTracker.start(Store(uri), "exp", run_name="c3-pan-conv-s0", tags={}, params={}).finish("completed")
    return tmp_path / "mlflow.db"


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.parametrize("damage", ["missing", "empty", "random_bytes", "not_mlflow"])
def test_report_bench_and_export_refuse_a_missing_empty_or_damaged_store_and_leave_it_as_it_was(
    tmp_path, capsys, damage
):
    db = _store_with_a_run(tmp_path)
    if damage == "missing":
        db.unlink()
    elif damage == "empty":
        db.write_bytes(b"")
    elif damage == "random_bytes":
        data = bytearray(db.read_bytes())
        data[4096:12288] = os.urandom(8192)  # pages of the schema and tables overwritten
        db.write_bytes(bytes(data))
    else:
        db.unlink()
        import sqlite3

        sqlite3.connect(db).execute("CREATE TABLE notes (text)").connection.commit()
    before = _digest(db) if db.exists() else None
    uri = f"sqlite:///{db}"

    codes = [report_cli.main([f"tracking_uri={uri}", f"out={tmp_path / 'reports'}"]),
             report_cli.main([f"tracking_uri={uri}", "experiment=exp", f"out={tmp_path / 'reports'}"]),
             bench_cli.main([f"tracking_uri={uri}", "experiment=exp"]),
             export.main([f"tracking_uri={uri}", "run_id=0123456789abcdef"])]

    lines = capsys.readouterr().err.strip().splitlines()
    assert codes == [1, 1, 2, 2] and len(lines) == 4  # the report's exit status for a store error is 1
    expected = {"missing": f"no MLflow store at {db}", "empty": f"MLflow store {db}: empty file (0 bytes)",
                "random_bytes": f"MLflow store {db}: damaged SQLite database",
                "not_mlflow": f"MLflow store {db}: a SQLite database without MLflow's tables"}[damage]
    assert all(expected in line for line in lines), lines
    assert (_digest(db) if db.exists() else None) == before  # never created, never written
    assert not (tmp_path / "reports").exists()


def test_a_checkpoint_write_that_fails_leaves_no_tmp_and_the_previous_checkpoint_intact(tmp_path):
    path = tmp_path / "last.pt"
    save_checkpoint({"epoch": 1}, path)
    (tmp_path / "last.pt.tmp").symlink_to("/dev/full")  # every write there fails with ENOSPC

    with pytest.raises(CheckpointWriteError, match=rf"^cannot write checkpoint {path}: No space left on device"):
        save_checkpoint({"epoch": 2}, path)

    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.pt"]
    import torch

    assert torch.load(path, weights_only=True) == {"epoch": 1}


def test_a_disk_full_during_a_checkpoint_leaves_the_run_resumable_and_no_tmp_behind(tmp_path):
    out = tmp_path / "out"
    (out / "weights").mkdir(parents=True)
    (out / "weights" / "best.pt.tmp").symlink_to("/dev/full")
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"

    with pytest.raises(CheckpointWriteError, match="No space left on device"):
        pipeline.run(compose_config(tiny_overrides(tmp_path)), output_dir=out)

    assert not list(out.rglob("*.tmp"))
    (run,) = Store(uri).runs_frame("lightyolo").to_dict("records")
    assert (run["mlflow_status"], run["tags.status"]) == ("KILLED", "interrupted")
    assert "No space left on device" in run["tags.error"]
    rerun = pipeline.run(compose_config(tiny_overrides(tmp_path)), output_dir=tmp_path / "again")
    assert rerun.status == "completed"
    statuses = sorted(Store(uri).runs_frame("lightyolo")["tags.status"])
    assert statuses == ["completed", "failed"]  # no checkpoint to resume from: closed, run again


# --- 8. a killed sweep's parent run ends; its resumed cells move under the new sweep --------


def test_a_rerun_of_a_killed_sweep_ends_its_parent_and_nests_the_resumed_cell_under_itself(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    argv = ["-m", *tiny_overrides(tmp_path), "seed=0,1", "train.epochs=3", "train.eval_interval=3",
            "train.threads=1", "bench.after_sweep=false", f"hydra.sweep.dir={tmp_path}/multirun/${{now:%H%M%S%f}}"]
    go = FORK.Event()
    launcher = FORK.Process(target=cli_child, args=(argv, tmp_path, tmp_path / "killed.log", go))
    launcher.start()
    go.set()
    deadline = time.time() + 180
    while not list((tmp_path / "multirun").glob("*/0/weights/last.pt")) and time.time() < deadline:
        time.sleep(0.05)
    os.kill(launcher.pid, signal.SIGKILL)  # the launcher and, with the basic launcher, its cell
    launcher.join()
    runs = Store(uri).runs_frame("lightyolo")
    (old_parent,) = runs[runs["tags.kind"] == "sweep"]["run_id"]
    (cut,) = runs[runs["tags.kind"] != "sweep"]["run_id"]

    codes = launch_together_one(argv, tmp_path)

    assert codes == 0, (tmp_path / "rerun.log").read_text()[-3000:]
    runs = Store(uri).runs_frame("lightyolo").set_index("run_id")
    old = runs.loc[old_parent]
    assert old["mlflow_status"] == "FAILED" and old["tags.error"].startswith("launcher cut off: 0 of the 1 cells")
    new_parent = runs[(runs["tags.kind"] == "sweep") & (runs.index != old_parent)]
    assert new_parent["mlflow_status"].tolist() == ["FINISHED"]
    cells = runs[runs["tags.kind"] != "sweep"]
    assert sorted(cells["tags.status"]) == ["completed", "completed"] and cut in cells.index
    assert set(cells["tags.mlflow.parentRunId"]) == {new_parent.index[0]}  # the resumed one too


def launch_together_one(argv: list[str], cwd: Path) -> int:
    go = FORK.Event()
    child = FORK.Process(target=cli_child, args=(argv, cwd, cwd / "rerun.log", go))
    child.start()
    go.set()
    child.join(timeout=300)
    return child.exitcode
