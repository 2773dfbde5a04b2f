"""lightyolo.store against a real tracking server: `mlflow server` on PostgreSQL, artifacts served
by the server, reached over HTTP on 127.0.0.1 (the team setup of the README)."""

from __future__ import annotations

import json
from pathlib import Path

from mlflow.tracking import MlflowClient

from lightyolo.store.client import Store
from lightyolo.store.locks import store_lock
from lightyolo.store.queries import runs_with_hash
from lightyolo.store.runs import RunTracker, start_sweep_run

from test_store import tiny_onnx


def test_a_cell_logs_and_reads_back_through_the_server(tracking_server: str, tmp_path: Path) -> None:
    uri = tracking_server
    assert uri.startswith("http://127.0.0.1:")
    with store_lock(uri):  # no file lock for a server: a no-op that must not touch disk
        pass
    experiment_id = Store(uri).ensure_experiment("server-cell")
    assert MlflowClient(uri).get_experiment(experiment_id).tags["mlflow.experimentKind"] == "custom_model_development"

    sweep = start_sweep_run(Store(uri), "server-cell", name="sweep", tags={"sweep_id": "s"}, params={"grid": "neck=pan"})
    run = RunTracker.start(
        Store(uri), "server-cell", run_name="c3-pan-conv-s0",
        tags={"config_hash": "abc", "status": "running"},
        params={"train.epochs": "2", "backbone": "c3"}, parent_run_id=sweep.run_id,
    )
    run.heartbeat()
    for epoch in (1, 2):
        run.log_metrics({"train/box_loss": 1.0 / epoch, "val/map50_95": 0.1 * epoch}, step=epoch)
    run.log_metrics({"map50_95": 0.2})
    run.log_json({"AP": 0.2}, "eval/coco_stats.json")
    run.log_dataset(name="shapes", digest="d1", source="/data/shapes", splits={"train": 16, "val": 8})
    model_uri = Store(uri).log_onnx_model(run.run_id, tiny_onnx(tmp_path / "model.onnx"))

    (past,) = runs_with_hash(Store(uri), "server-cell", "abc")
    assert (past.run_id, past.mlflow_status, past.status) == (run.run_id, "RUNNING", "running")
    assert "owner.heartbeat" in past.tags
    run.finish("completed")
    sweep.log_text("summary", "summary.txt")
    sweep.finish("completed")

    runs = Store(uri).runs_frame("server-cell").set_index("run_name")
    cell = runs.loc["c3-pan-conv-s0"]
    assert cell["mlflow_status"] == "FINISHED" and cell["tags.status"] == "completed"
    assert cell["metrics.map50_95"] == 0.2 and cell["params.backbone"] == "c3"
    assert cell["tags.mlflow.parentRunId"] == sweep.run_id
    assert Store(uri).metric_history(run.run_id, "train/box_loss") == [(1, 1.0), (2, 0.5)]
    assert runs_with_hash(Store(uri), "server-cell", "abc")[0].status == "completed"

    client = MlflowClient(uri)
    stats = client.download_artifacts(run.run_id, "eval/coco_stats.json", str(tmp_path))
    assert json.loads(Path(stats).read_text()) == {"AP": 0.2}
    assert client.get_run(run.run_id).inputs.dataset_inputs[0].dataset.name == "shapes"
    model = client.get_logged_model(model_uri.removeprefix("models:/"))
    assert (model.source_run_id, model.experiment_id) == (run.run_id, experiment_id)
    assert any(a.path == "model.onnx" for a in client.list_logged_model_artifacts(model.model_id))
