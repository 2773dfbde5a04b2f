"""Resume that cannot hijack a live cell (issue 15, part 5): a second run of a cell that is
still training elsewhere leaves it alone; once its process is SIGKILLed, a rerun resumes it
from its `last.pt` as the same MLflow run. The first run is paused (SIGSTOP) while the second
looks, so that it is still mid-training however slow the machine is."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from filelock import FileLock, Timeout

from lightyolo import pipeline
from lightyolo.store.client import Store
from lightyolo.store.schema import HEARTBEAT_TAG, OWNER_PID_TAG

from conftest import CONF_DIR, REPO, compose_config, tiny_overrides

# pipeline.run on the config these overrides compose, in a process of its own.
CHILD = """
import json, sys
from hydra import compose, initialize_config_dir
from filelock import FileLock, Timeout

from lightyolo import pipeline
with initialize_config_dir(sys.argv[1], version_base="1.3"):
    cfg = compose("config", overrides=json.loads(sys.argv[2]), return_hydra_config=True)
pipeline.run(cfg, output_dir=sys.argv[3])
"""
EPOCHS = 4


def pause_outside_store_lock(pid: int, db: Path) -> None:
    """SIGSTOP the process group `pid` at a moment it does not hold the SQLite store's lock:
    it stays alive and mid-training, however long the second run takes to look."""
    lock = FileLock(str(db) + ".lock")
    for _ in range(100):
        os.killpg(pid, signal.SIGSTOP)
        try:
            with lock.acquire(timeout=0):
                return
        except Timeout:
            os.killpg(pid, signal.SIGCONT)
            time.sleep(0.05)
    raise AssertionError("the first run never let go of the store's lock")


def test_a_live_cell_is_left_alone_and_a_killed_one_resumed(tmp_path: Path) -> None:
    overrides = tiny_overrides(tmp_path) + [f"train.epochs={EPOCHS}", f"train.eval_interval={EPOCHS}"]
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    out = tmp_path / "first"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(CONF_DIR), json.dumps(overrides), str(out)],
        cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        deadline = time.time() + 120
        while not (out / "weights" / "last.pt").exists() and child.poll() is None and time.time() < deadline:
            time.sleep(0.2)
        assert (out / "weights" / "last.pt").exists(), "the first run never wrote a checkpoint"
        pause_outside_store_lock(child.pid, tmp_path / "mlflow.db")
        (first,) = Store(uri).runs_frame("lightyolo").to_dict("records")
        assert first["mlflow_status"] == "RUNNING" and first[f"tags.{OWNER_PID_TAG}"] == str(child.pid)
        assert float(first[f"tags.{HEARTBEAT_TAG}"]) > time.time() - 120

        second = pipeline.run(compose_config(overrides), output_dir=tmp_path / "second")
        assert (second.status, second.run_id) == ("running elsewhere", first["run_id"])
        assert child.poll() is None
        (still,) = Store(uri).runs_frame("lightyolo").to_dict("records")
        assert still["mlflow_status"] == "RUNNING" and still["tags.status"] == "running"
        assert not (tmp_path / "second").exists()
    finally:
        os.killpg(child.pid, signal.SIGKILL)
        child.wait()

    resumed = pipeline.run(compose_config(overrides), output_dir=tmp_path / "third")
    assert (resumed.status, resumed.run_id) == ("completed", first["run_id"])
    (done,) = Store(uri).runs_frame("lightyolo").to_dict("records")
    assert done["mlflow_status"] == "FINISHED" and done["tags.status"] == "completed"
    assert int(done["tags.resumed_from_epoch"]) >= 1
    assert done[f"tags.{OWNER_PID_TAG}"] == str(os.getpid())  # the new owner
    steps = {step for step, _ in Store(uri).metric_history(resumed.run_id, "train/box_loss")}
    assert steps == set(range(1, EPOCHS + 1))
