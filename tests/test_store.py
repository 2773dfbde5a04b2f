"""lightyolo.store against a real SQLite MLflow store: the experiment kind, name checks, parent
runs, dataset inputs, source tags, group params, ONNX models, and who owns a running cell."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import onnx
import pytest
from mlflow.tracking import MlflowClient
from onnx import TensorProto, helper

from lightyolo.store.client import Store, check_experiment_name
from lightyolo.store.ownership import owner_is_alive, owner_tags, pid_alive
from lightyolo.store.queries import runs_named, runs_with_hash, sweep_parent_run
from lightyolo.store.runs import PARENT_RUN_ENV, RunTracker, cell_params, parent_run_id_from_env, source_tags, start_sweep_run
from lightyolo.store.schema import HEARTBEAT_TAG, OWNER_HOST_TAG, OWNER_PID_TAG


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> str:
    """One store for the module (a new SQLite store spends seconds on migrations); each test
    uses its own experiment, named after the test."""
    return f"sqlite:///{tmp_path_factory.mktemp('store') / 'mlflow.db'}"


@pytest.fixture
def exp(request: pytest.FixtureRequest) -> str:
    return request.node.name


def test_experiments_open_on_the_training_view_new_and_old_ones(store: str, exp: str) -> None:
    client = MlflowClient(store)
    fresh = Store(store).ensure_experiment(exp + "-fresh")
    assert client.get_experiment(fresh).tags["mlflow.experimentKind"] == "custom_model_development"
    old = client.create_experiment(exp + "-old")  # as made before the tag existed
    assert Store(store).ensure_experiment(exp + "-old") == old
    assert client.get_experiment(old).tags["mlflow.experimentKind"] == "custom_model_development"


def test_experiments_carry_the_view_that_shows_the_answer_first(store: str, exp: str) -> None:
    """The shared view state a printed UI link opens: the test mAP column first, then size,
    compute and the quick latency, as the UI's column ids."""
    experiment = MlflowClient(store).get_experiment(Store(store).ensure_experiment(exp))
    state = json.loads(experiment.tags["mlflow.sharedViewState.lightyolo"])
    assert state["selectedColumns"][:5] == [
        "metrics.`test/map50_95`", "metrics.`test/map50`", "metrics.`params_m`", "metrics.`gflops_640`",
        "metrics.`quick/latency_ms`",
    ]


@pytest.mark.parametrize("name", ["../x", "a/b", "..", ".", "", "  ", "a\\b"])
def test_experiment_names_that_would_leave_the_artifact_root_are_refused(
    tmp_path: Path, name: str
) -> None:
    store = tmp_path / "store" / "mlflow.db"
    with pytest.raises(ValueError, match=r"experiment=.*expected a name without '/'"):
        Store(f"sqlite:///{store}").ensure_experiment(name)
    assert not list(tmp_path.rglob("*"))  # refused before anything was written


def test_ordinary_experiment_names_pass_unchanged() -> None:
    for name in ("smoke", "ablation 2024", "a..b", "grid-v1.2"):
        assert check_experiment_name(name) == name


def test_cells_nest_under_the_sweep_run_and_the_summary_lands_on_it(store: str, exp: str) -> None:
    sweep = start_sweep_run(Store(store), exp, name="sweep-smoke", tags={"sweep_id": "s1"},
                            params={"overrides": "neck=pan,slim"})
    cells = [
        RunTracker.start(Store(store), exp, run_name=f"c3-{neck}-conv-s0", tags={"sweep_id": "s1"},
                         params={}, parent_run_id=sweep.run_id)
        for neck in ("pan", "slim")
    ]
    alone = RunTracker.start(Store(store), exp, run_name="single", tags={}, params={})
    sweep.log_text("cell  mAP50-95\nc3-pan  0.1\n", "summary.txt")
    for run in (*cells, alone, sweep):
        run.finish("completed")

    runs = Store(store).runs_frame(exp).set_index("run_name")
    assert set(runs.loc[["c3-pan-conv-s0", "c3-slim-conv-s0"], "tags.mlflow.parentRunId"]) == {sweep.run_id}
    assert runs.loc["single"].isna()["tags.mlflow.parentRunId"]
    assert runs.loc["sweep-smoke", "tags.kind"] == "sweep"
    assert runs.loc["sweep-smoke", "params.overrides"] == "neck=pan,slim"
    assert sweep_parent_run(Store(store), exp, "s1") == (sweep.run_id, "sweep-smoke")
    assert sweep_parent_run(Store(store), exp, "s2") is None
    local = MlflowClient(store).download_artifacts(sweep.run_id, "summary.txt")
    assert "mAP50-95" in Path(local).read_text()


def test_runs_are_found_by_name_and_kind(store: str, exp: str) -> None:
    assert runs_named(Store(store), exp, "report-x", "report") == []
    first = RunTracker.start(Store(store), exp, run_name="report-x", tags={"kind": "report"}, params={})
    RunTracker.start(Store(store), exp, run_name="report-x", tags={}, params={})  # no report
    RunTracker.start(Store(store), exp, run_name="report-y's", tags={"kind": "report"}, params={})
    assert runs_named(Store(store), exp, "report-x", "report") == [first.run_id]
    assert len(runs_named(Store(store), exp, "report-y's", "report")) == 1
    first.discard()
    assert runs_named(Store(store), exp, "report-x", "report") == []


def test_the_dataset_is_an_input_of_the_run(store: str, exp: str, tmp_path: Path) -> None:
    run = RunTracker.start(Store(store), exp, run_name="cell", tags={}, params={})
    digest = "f" * 64  # longer than MLflow keeps
    run.log_dataset(name="coco128", digest=digest, source=str(tmp_path / "coco128"),
                    splits={"train": 128, "val": 128})
    inputs = MlflowClient(store).get_run(run.run_id).inputs.dataset_inputs
    assert len(inputs) == 1
    dataset = inputs[0].dataset
    assert (dataset.name, dataset.digest) == ("coco128", digest[:36])
    assert json.loads(dataset.source) == {"uri": str(tmp_path / "coco128")}
    assert json.loads(dataset.profile) == {"train": 128, "val": 128}
    assert {t.key: t.value for t in inputs[0].tags} == {"mlflow.data.context": "train"}


def test_source_tags_are_mlflows_own() -> None:
    tags = source_tags("abc123", "lightyolo.run")
    assert tags["mlflow.source.git.commit"] == "abc123"
    assert tags["mlflow.source.name"] == "lightyolo.run"
    assert tags["mlflow.user"]
    assert "mlflow.source.git.commit" not in source_tags(None, "lightyolo.run")


def test_group_choices_become_params_beside_the_flattened_config() -> None:
    config = {"backbone": {"_target_": "lightyolo.models.Ghost", "width": 0.25},
              "neck": {"_target_": "x.Pan"}, "seed": 0}
    choices = {"backbone": "ghost", "neck": "pan", "operator": "conv", "dataset": "shapes"}
    params = cell_params(config, choices)
    assert params["backbone"] == "ghost" and params["dataset"] == "shapes"
    assert params["backbone._target_"] == "lightyolo.models.Ghost" and params["seed"] == "0"
    with pytest.raises(ValueError, match="'operator'.*collides"):
        cell_params({"operator": "depthwise"}, choices)


def tiny_onnx(path: Path) -> Path:
    node = helper.make_node("Relu", ["images"], ["out"])
    graph = helper.make_graph(
        [node], "tiny",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, [1, 3, 8, 8])],
        [helper.make_tensor_value_info("out", TensorProto.FLOAT, [1, 3, 8, 8])],
    )
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    return path


def test_an_onnx_file_becomes_a_model_of_the_run(store: str, exp: str, tmp_path: Path) -> None:
    run = RunTracker.start(Store(store), exp, run_name="cell", tags={}, params={})
    uri = Store(store).log_onnx_model(run.run_id, tiny_onnx(tmp_path / "model.onnx"))
    run.finish("completed")
    client = MlflowClient(store)
    model = client.get_logged_model(uri.removeprefix("models:/"))
    assert model.source_run_id == run.run_id
    assert model.experiment_id == client.get_run(run.run_id).info.experiment_id  # not Default's
    outputs = client.get_run(run.run_id).outputs.model_outputs
    assert [o.model_id for o in outputs] == [model.model_id]
    import mlflow.onnx
    from mlflow.tracking._tracking_service.utils import _use_tracking_uri

    with _use_tracking_uri(store):
        loaded = mlflow.onnx.load_model(uri)
    assert loaded.graph.node[0].op_type == "Relu"


def test_a_running_cell_records_its_owner_and_a_heartbeat(store: str, exp: str) -> None:
    run = RunTracker.start(Store(store), exp, run_name="cell", tags={"config_hash": "h"}, params={})
    run.start_heartbeat(interval_s=0.2)
    first = float(runs_with_hash(Store(store), exp, "h")[0].tags[HEARTBEAT_TAG])
    time.sleep(1.0)
    past = runs_with_hash(Store(store), exp, "h")[0]
    assert float(past.tags[HEARTBEAT_TAG]) > first  # the thread beat again
    assert past.tags[OWNER_PID_TAG] == str(os.getpid())
    assert owner_is_alive(past.tags, now=time.time(), host=past.tags[OWNER_HOST_TAG])
    run.finish("completed")
    time.sleep(0.5)
    stopped = float(runs_with_hash(Store(store), exp, "h")[0].tags[HEARTBEAT_TAG])
    time.sleep(0.5)
    assert float(runs_with_hash(Store(store), exp, "h")[0].tags[HEARTBEAT_TAG]) == stopped


OWNER_SCRIPT = """
import sys, time
from lightyolo.store.client import Store
from lightyolo.store.runs import RunTracker
run = RunTracker.start(Store(sys.argv[1]), sys.argv[2], run_name="cell", tags={"config_hash": "k"}, params={})
run.start_heartbeat(interval_s=0.5)
print(run.run_id, flush=True)
time.sleep(120)
"""


def test_a_killed_owner_is_seen_gone_and_a_live_one_alive(store: str, exp: str) -> None:
    owner = subprocess.Popen(
        [sys.executable, "-c", OWNER_SCRIPT, store, exp], stdout=subprocess.PIPE, text=True,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])},
    )
    try:
        run_id = owner.stdout.readline().strip()
        (past,) = runs_with_hash(Store(store), exp, "k")
        assert past.run_id == run_id and past.mlflow_status == "RUNNING"
        assert past.tags[OWNER_PID_TAG] == str(owner.pid)
        here = past.tags[OWNER_HOST_TAG]
        assert owner_is_alive(past.tags, now=time.time(), host=here)  # leave it alone
        owner.kill()
        owner.wait()
        (past,) = runs_with_hash(Store(store), exp, "k")
        assert past.mlflow_status == "RUNNING"  # as a SIGKILL leaves it
        assert not owner_is_alive(past.tags, now=time.time(), host=here)  # cut off: resume it
        # From another host the pid cannot be checked: the heartbeat decides, after the timeout.
        assert owner_is_alive(past.tags, now=time.time(), host="elsewhere")
        assert not owner_is_alive(past.tags, now=time.time() + 601, host="elsewhere")
    finally:
        owner.kill()
        owner.wait()


FIRST_READ_SCRIPT = """
import sys
from lightyolo.store.client import Store
from lightyolo.store.queries import runs_with_hash
print(len(runs_with_hash(Store(sys.argv[1]), "exp", "k")))
"""


def test_processes_opening_a_new_store_at_once_all_succeed(tmp_path: Path) -> None:
    """MLflow creates and migrates a new SQLite database on first use; three processes doing
    it at once corrupted it before the first touch took the store lock (measured: a failing
    process in 5 of 5 tries)."""
    store = f"sqlite:///{tmp_path / 'mlflow.db'}"
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    readers = [
        subprocess.Popen([sys.executable, "-c", FIRST_READ_SCRIPT, store], env=env,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(3)
    ]
    results = [reader.communicate(timeout=120) for reader in readers]
    assert [reader.returncode for reader in readers] == [0, 0, 0], [err[-300:] for _, err in results]
    assert [out.strip() for out, _ in results] == ["0"] * 3  # each read the new, empty store
    assert runs_with_hash(Store(store), "exp", "k") == []  # the store is whole afterwards


# owner_is_alive: the pure decision, with pids given as alive or dead.
NOW = 10_000.0
LIVE = {OWNER_HOST_TAG: "node1", OWNER_PID_TAG: "42", HEARTBEAT_TAG: str(NOW - 5)}


def alive(pid: int) -> bool:
    return pid == 42


def dead(pid: int) -> bool:
    return False


def test_a_fresh_heartbeat_from_a_live_pid_on_this_host_is_alive() -> None:
    assert owner_is_alive(LIVE, now=NOW, host="node1", pid_alive=alive)


def test_a_dead_pid_on_this_host_is_gone_even_with_a_fresh_heartbeat() -> None:
    assert not owner_is_alive(LIVE, now=NOW, host="node1", pid_alive=dead)


def test_another_hosts_pid_is_not_checked_its_heartbeat_decides() -> None:
    assert owner_is_alive(LIVE, now=NOW, host="node2", pid_alive=dead)
    stale = {**LIVE, HEARTBEAT_TAG: str(NOW - 601)}
    assert not owner_is_alive(stale, now=NOW, host="node2", pid_alive=alive)


def test_a_stale_heartbeat_is_gone_even_if_the_pid_was_reused() -> None:
    stale = {**LIVE, HEARTBEAT_TAG: str(NOW - 601)}
    assert not owner_is_alive(stale, now=NOW, host="node1", pid_alive=alive)
    assert owner_is_alive(stale, now=NOW, host="node1", timeout_s=3600, pid_alive=alive)


def test_a_run_without_an_owner_record_is_gone() -> None:
    assert not owner_is_alive({}, now=NOW, host="node1", pid_alive=alive)
    assert not owner_is_alive({**LIVE, HEARTBEAT_TAG: "soon"}, now=NOW, host="node1", pid_alive=alive)
    no_pid = {OWNER_HOST_TAG: "node1", HEARTBEAT_TAG: str(NOW)}
    assert not owner_is_alive(no_pid, now=NOW, host="node1", pid_alive=alive)


def test_owner_tags_describe_this_process() -> None:
    tags = owner_tags(now=123.5)
    assert tags[OWNER_PID_TAG] == str(os.getpid()) and float(tags[HEARTBEAT_TAG]) == 123.5
    assert owner_is_alive(tags, now=124.0, host=tags[OWNER_HOST_TAG])


def test_pid_alive_sees_a_killed_process_as_dead_reaped_or_not() -> None:
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    assert pid_alive(proc.pid)
    proc.kill()
    time.sleep(0.3)
    assert not pid_alive(proc.pid)  # a zombie: killed, not reaped yet
    proc.wait()
    assert not pid_alive(proc.pid)
    assert pid_alive(os.getpid())


def test_the_parent_run_id_travels_under_lightyolos_own_name(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(PARENT_RUN_ENV, raising=False)
    assert parent_run_id_from_env() is None
    monkeypatch.setenv(PARENT_RUN_ENV, "abc")
    assert parent_run_id_from_env() == "abc"
    assert PARENT_RUN_ENV != "MLFLOW_RUN_ID"
