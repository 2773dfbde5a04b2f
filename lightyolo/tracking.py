"""Everything that talks to MLflow (design.md, "MLflow schema"); nothing else imports mlflow.

The default store is embedded: `mlflow.db` (SQLite) in the directory a command was started
from, always given to MLflow as an absolute URI so that no job's working directory can split
it. Parallel jobs on one SQLite file race on migrations and writes ("database is locked"),
so every write to a SQLite store goes through a file lock beside the database; a tracking
server (`mlflow server --backend-store-uri postgresql://…`) needs no lock.
"""

from __future__ import annotations

import contextlib
import json
import logging
import tempfile
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
from filelock import FileLock
from mlflow.entities import Metric, Param, RunStatus, RunTag, ViewType
from mlflow.tracking import MlflowClient

log = logging.getLogger(__name__)

MAX_PARAM_CHARS = 6000
BATCH_LIMIT = 100  # MLflow accepts at most 100 params/tags per log_batch call
STATUS_TAG = "status"


def default_tracking_uri(base_dir: str | Path) -> str:
    """`sqlite:///<absolute base_dir>/mlflow.db`."""
    return f"sqlite:///{(Path(base_dir).expanduser().resolve() / 'mlflow.db').as_posix()}"


def sqlite_path(tracking_uri: str) -> Path | None:
    """The database file of a `sqlite:///` URI, else None."""
    prefix = "sqlite:///"
    return Path(tracking_uri[len(prefix) :]) if tracking_uri.startswith(prefix) else None


@contextlib.contextmanager
def store_lock(tracking_uri: str) -> Iterator[None]:
    """Serialise writes to a SQLite store across processes; a no-op for servers."""
    db = sqlite_path(tracking_uri)
    if db is None:
        yield
        return
    db.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(db) + ".lock", timeout=600):
        yield


def _client(tracking_uri: str) -> MlflowClient:
    return MlflowClient(tracking_uri=tracking_uri)


def ensure_experiment(tracking_uri: str, name: str) -> str:
    """The id of experiment `name`, created (once, under the store lock) if missing.

    For a SQLite store the artifacts go to `mlartifacts/` beside the database.
    """
    with store_lock(tracking_uri):
        client = _client(tracking_uri)
        experiment = client.get_experiment_by_name(name)
        if experiment is not None:
            return experiment.experiment_id
        db = sqlite_path(tracking_uri)
        location = (db.parent / "mlartifacts" / name).as_uri() if db is not None else None
        return client.create_experiment(name, artifact_location=location)


def flatten(config: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    """Nested mapping → {"a.b.c": "value"} with string values (MLflow params)."""
    flat: dict[str, str] = {}
    for key, value in config.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(flatten(value, dotted + "."))
        else:
            text = json.dumps(value) if isinstance(value, (list, tuple)) else str(value)
            flat[dotted] = text[:MAX_PARAM_CHARS]
    return flat


def _chunks(items: list, size: int) -> Iterator[list]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


@dataclass
class RunTracker:
    """One MLflow run: the only handle the pipeline uses to log."""

    tracking_uri: str
    run_id: str

    @classmethod
    def start(
        cls,
        tracking_uri: str,
        experiment: str,
        *,
        run_name: str,
        tags: Mapping[str, str],
        params: Mapping[str, str],
    ) -> "RunTracker":
        experiment_id = ensure_experiment(tracking_uri, experiment)
        with store_lock(tracking_uri):
            client = _client(tracking_uri)
            run = client.create_run(
                experiment_id, run_name=run_name, tags={k: str(v) for k, v in tags.items()}
            )
            entries = [Param(k, v) for k, v in params.items()]
            for chunk in _chunks(entries, BATCH_LIMIT):
                client.log_batch(run.info.run_id, params=chunk, synchronous=True)
        return cls(tracking_uri, run.info.run_id)

    @classmethod
    def reopen(cls, tracking_uri: str, run_id: str, *, tags: Mapping[str, str]) -> "RunTracker":
        """Continue an existing run (a resumed cell); its params are already logged."""
        with store_lock(tracking_uri):
            client = _client(tracking_uri)
            client.update_run(run_id, status=RunStatus.to_string(RunStatus.RUNNING))
        tracker = cls(tracking_uri, run_id)
        tracker.set_tags(tags)
        return tracker

    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        now = int(time.time() * 1000)
        entries = [Metric(k, float(v), now, step or 0) for k, v in metrics.items()]
        with store_lock(self.tracking_uri):
            client = _client(self.tracking_uri)
            for chunk in _chunks(entries, BATCH_LIMIT):
                client.log_batch(self.run_id, metrics=chunk, synchronous=True)

    def set_tags(self, tags: Mapping[str, str]) -> None:
        entries = [RunTag(k, str(v)[:MAX_PARAM_CHARS]) for k, v in tags.items()]
        with store_lock(self.tracking_uri):
            client = _client(self.tracking_uri)
            for chunk in _chunks(entries, BATCH_LIMIT):
                client.log_batch(self.run_id, tags=chunk, synchronous=True)

    def log_artifact(self, local_path: str | Path, artifact_dir: str | None = None) -> None:
        with store_lock(self.tracking_uri):
            _client(self.tracking_uri).log_artifact(self.run_id, str(local_path), artifact_dir)

    def log_json(self, obj: Any, artifact_file: str) -> None:
        """Write `obj` as JSON and log it at `artifact_file` (e.g. "eval/coco_stats.json")."""
        path = Path(artifact_file)
        with tempfile.TemporaryDirectory() as tmp:
            local = Path(tmp) / path.name
            local.write_text(json.dumps(obj))
            self.log_artifact(local, path.parent.as_posix() if path.parent.parts else None)

    def finish(self, status: str, error: str | None = None) -> None:
        """End the run: status 'completed' → FINISHED, 'failed' → FAILED with an error tag."""
        tags = {STATUS_TAG: status}
        if error is not None:
            tags["error"] = error
        self.set_tags(tags)
        terminal = RunStatus.FAILED if status == "failed" else RunStatus.FINISHED
        with store_lock(self.tracking_uri):
            _client(self.tracking_uri).set_terminated(
                self.run_id, status=RunStatus.to_string(terminal)
            )


def experiment_names(tracking_uri: str) -> list[str]:
    """Experiment names, newest first (by creation time)."""
    experiments = _client(tracking_uri).search_experiments(view_type=ViewType.ACTIVE_ONLY)
    experiments.sort(key=lambda e: e.creation_time or 0, reverse=True)
    return [e.name for e in experiments]


def runs_frame(tracking_uri: str, experiment: str) -> pd.DataFrame:
    """Every run of `experiment` as one row: run_id, run_name, mlflow_status, start/end
    time (ms), then `tags.<k>`, `params.<k>` and `metrics.<k>` (final values) columns.
    An unknown experiment → ValueError naming it and the known ones."""
    client = _client(tracking_uri)
    exp = client.get_experiment_by_name(experiment)
    if exp is None:
        known = ", ".join(experiment_names(tracking_uri)) or "none"
        raise ValueError(
            f"no MLflow experiment named {experiment!r} at {tracking_uri} (known: {known})"
        )
    rows: list[dict[str, Any]] = []
    token = None
    while True:
        page = client.search_runs([exp.experiment_id], max_results=1000, page_token=token)
        for run in page:
            row: dict[str, Any] = {
                "run_id": run.info.run_id,
                "run_name": run.info.run_name,
                "mlflow_status": run.info.status,
                "start_time": run.info.start_time,
                "end_time": run.info.end_time,
            }
            row.update({f"tags.{k}": v for k, v in run.data.tags.items()})
            row.update({f"params.{k}": v for k, v in run.data.params.items()})
            row.update({f"metrics.{k}": v for k, v in run.data.metrics.items()})
            rows.append(row)
        token = page.token
        if not token:
            break
    return pd.DataFrame(rows)


def metric_history(tracking_uri: str, run_id: str, key: str) -> list[tuple[int, float]]:
    """(step, value) pairs of one metric of one run, by step."""
    history = _client(tracking_uri).get_metric_history(run_id, key)
    return sorted((m.step, m.value) for m in history)


@dataclass(frozen=True)
class PastRun:
    """What resume needs to know of an earlier run of the same cell."""

    run_id: str
    mlflow_status: str  # RUNNING (cut off, or still going), FINISHED, FAILED, KILLED
    status: str  # the `status` tag: completed / failed / resumed / running
    output_dir: str | None
    start_time: int


def runs_with_hash(tracking_uri: str, experiment: str, config_hash: str) -> list[PastRun]:
    """Runs of `experiment` tagged with `config_hash`, newest first ([] if none)."""
    client = _client(tracking_uri)
    exp = client.get_experiment_by_name(experiment)
    if exp is None:
        return []
    found = client.search_runs(
        [exp.experiment_id],
        filter_string=f"tags.config_hash = '{config_hash}'",
        order_by=["attributes.start_time DESC"],
    )
    return [
        PastRun(
            run.info.run_id,
            run.info.status,
            run.data.tags.get(STATUS_TAG, ""),
            run.data.tags.get("output_dir"),
            run.info.start_time,
        )
        for run in found
    ]


# --- Reading runs back and writing onto finished runs (export and bench stages) -----------
# Appended as one section so that edits elsewhere in this module merge cleanly. Logging onto
# an existing run goes through `RunTracker(tracking_uri, run_id)` (metrics, tags, artifacts).

import os  # noqa: E402 (kept with the section that uses it)

PROGRESS_BAR_ENV = "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"


@dataclass(frozen=True)
class CompletedRun:
    """A finished cell run as the bench stage needs it."""

    run_id: str
    run_name: str
    tags: dict[str, str]
    params: dict[str, str]
    metrics: dict[str, float]


def run_exists(tracking_uri: str, run_id: str) -> bool:
    """Whether `run_id` is a run of the store (False for an unknown id, never an exception)."""
    db = sqlite_path(tracking_uri)
    if db is not None and not db.is_file():
        return False
    try:
        _client(tracking_uri).get_run(run_id)
    except Exception:  # MlflowException for an unknown id; its type is MLflow-internal
        return False
    return True


def completed_runs(tracking_uri: str, experiment: str) -> list[CompletedRun]:
    """Runs of `experiment` with tag status=completed, minus the report's own (tag kind=report),
    oldest first. An unknown experiment → ValueError naming it and the known ones."""
    frame = runs_frame(tracking_uri, experiment)
    client = _client(tracking_uri)
    found = []
    if frame.empty:
        return found
    for run_id in frame.sort_values("start_time")["run_id"]:
        run = client.get_run(run_id)
        tags = dict(run.data.tags)
        if tags.get(STATUS_TAG) != "completed" or tags.get("kind") == "report":
            continue
        found.append(
            CompletedRun(run_id, run.info.run_name, tags, dict(run.data.params), dict(run.data.metrics))
        )
    return found


def run_has_artifact(tracking_uri: str, run_id: str, artifact_path: str) -> bool:
    """Whether the run logged a file at `artifact_path` (e.g. "weights/best.pt")."""
    parent = Path(artifact_path).parent.as_posix()
    listed = _client(tracking_uri).list_artifacts(run_id, None if parent == "." else parent)
    return any(entry.path == artifact_path and not entry.is_dir for entry in listed)


def download_run_artifact(tracking_uri: str, run_id: str, artifact_path: str, directory: str | Path) -> Path:
    """Download one artifact file of a run into `directory`; returns the local path."""
    Path(directory).mkdir(parents=True, exist_ok=True)
    # MLflow's progress bar goes to stderr, where the CLIs print their one-line errors.
    previous = os.environ.get(PROGRESS_BAR_ENV)
    os.environ[PROGRESS_BAR_ENV] = "false"
    try:
        local = _client(tracking_uri).download_artifacts(run_id, artifact_path, str(directory))
    finally:
        if previous is None:
            del os.environ[PROGRESS_BAR_ENV]
        else:
            os.environ[PROGRESS_BAR_ENV] = previous
    return Path(local)


def log_run_artifact_as(tracking_uri: str, run_id: str, local_path: str | Path, artifact_path: str) -> None:
    """Log `local_path` on the run under the exact name `artifact_path` (e.g. "export/model.onnx")."""
    target = Path(artifact_path)
    with tempfile.TemporaryDirectory() as tmp:
        staged = Path(tmp) / target.name
        staged.write_bytes(Path(local_path).read_bytes())
        parent = target.parent.as_posix()
        RunTracker(tracking_uri, run_id).log_artifact(staged, None if parent == "." else parent)
