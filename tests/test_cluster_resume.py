"""What a cell needs to continue on another machine (issue 28, docs/cluster.md), without
SLURM: its checkpoints come back from the store when its output directory is gone, and
SLURM's time-limit signal (SIGUSR2, submitit's requeue) is held until the epoch boundary and
then handed to submitit's handler. The SLURM end-to-end test is tests/test_cluster_slurm.py."""

from __future__ import annotations

import os
import shutil
import signal
from pathlib import Path

import pytest

from lightyolo import pipeline
from lightyolo.store.schema import CHECKPOINT_SOURCE_TAG
from lightyolo.train.interrupt import GracefulStop, TrainingInterrupted, hand_back
from lightyolo.store.client import Store

from conftest import compose_config, tiny_overrides
from test_reliability_runs import _signal_run


def test_a_cut_off_cell_whose_output_dir_is_gone_resumes_from_the_stores_last_pt(tmp_path: Path) -> None:
    epochs = 5
    code, text, uri = _signal_run(tmp_path, epochs, [signal.SIGTERM])
    assert code == 128 + signal.SIGTERM, text[-3000:]
    (cut,) = Store(uri).runs_frame("lightyolo").to_dict("records")
    logged = [step for step, _ in Store(uri).metric_history(cut["run_id"], "train/box_loss")]
    shutil.rmtree(tmp_path / "outputs")  # another node: nothing of the first job's files

    resumed = pipeline.run(compose_config(tiny_overrides(tmp_path) + [f"train.epochs={epochs}",
                                                                      f"train.eval_interval={epochs}"]),
                           output_dir=tmp_path / "elsewhere")

    assert (resumed.status, resumed.run_id) == ("completed", cut["run_id"])
    (done,) = Store(uri).runs_frame("lightyolo").to_dict("records")
    assert done[f"tags.{CHECKPOINT_SOURCE_TAG}"] == "store"
    assert int(done["tags.resumed_from_epoch"]) == len(logged)
    assert done["tags.output_dir"] == str((tmp_path / "elsewhere").resolve())
    steps = [step for step, _ in Store(uri).metric_history(done["run_id"], "train/box_loss")]
    assert steps == list(range(1, epochs + 1))  # no epoch logged twice, none lost


def test_without_checkpoints_in_the_store_a_cell_whose_output_dir_is_gone_starts_again(tmp_path: Path) -> None:
    """mlflow.checkpoint_to_store=false: no per-epoch copy, so on another machine (or after
    the output dir is deleted) there is nothing to continue from; the cell trains anew."""
    epochs = 5
    code, text, uri = _signal_run(tmp_path, epochs, [signal.SIGTERM], ["mlflow.checkpoint_to_store=false"])
    assert code == 128 + signal.SIGTERM, text[-3000:]
    (cut,) = Store(uri).runs_frame("lightyolo").to_dict("records")
    assert not Store(uri).has_artifact(cut["run_id"], "weights/last.pt")
    shutil.rmtree(tmp_path / "outputs")

    again = pipeline.run(compose_config(tiny_overrides(tmp_path) + [f"train.epochs={epochs}",
                                                                    f"train.eval_interval={epochs}"]),
                         output_dir=tmp_path / "elsewhere")

    assert again.status == "completed" and again.run_id != cut["run_id"]
    runs = {r["run_id"]: r for r in Store(uri).runs_frame("lightyolo").to_dict("records")}
    assert runs[cut["run_id"]]["tags.status"] == "failed"
    assert "cut off before its first checkpoint" in runs[cut["run_id"]]["tags.error"]


def test_sigusr2_is_held_to_the_next_step_then_handed_to_the_schedulers_handler() -> None:
    received: list[int] = []
    before = signal.signal(signal.SIGUSR2, lambda signum, frame: received.append(signum))
    try:
        with GracefulStop() as stop:
            os.kill(os.getpid(), signal.SIGUSR2)
            assert received == [] and stop.signum == signal.SIGUSR2  # held, not yet passed on
            with pytest.raises(TrainingInterrupted, match="SIGUSR2 during epoch 2") as caught:
                stop.check(epoch=1)
        hand_back(caught.value)  # the run is saved: submitit may requeue now
        assert received == [signal.SIGUSR2]
        hand_back(TrainingInterrupted(signal.SIGTERM, 0))  # not the requeue signal: nothing
        assert received == [signal.SIGUSR2]
    finally:
        signal.signal(signal.SIGUSR2, before)


def test_sigusr2_is_left_alone_where_no_scheduler_handles_it() -> None:
    with GracefulStop():
        assert signal.getsignal(signal.SIGUSR2) == signal.SIG_DFL
