"""Everything that talks to MLflow (docs/mlflow.md); nothing else imports mlflow.

The default store is embedded: `mlflow.db` (SQLite) in the directory a command was started
from, always given to MLflow as an absolute URI so that no job's working directory can split
it. Parallel jobs on one SQLite file race on migrations and writes ("database is locked"),
so every write to a SQLite store goes through a file lock beside the database, and so does
the first touch of the store in each process (which creates and migrates a new database);
a tracking server (`mlflow server --backend-store-uri postgresql://…`) needs no lock.
"""

from __future__ import annotations

import contextlib
import getpass
import json
import logging
import os
import socket
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from importlib.metadata import version
from pathlib import Path
from typing import Any

import pandas as pd
from filelock import FileLock
from mlflow.entities import Dataset, DatasetInput, InputTag, Metric, Param, RunStatus, RunTag, ViewType
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from lightyolo.store import schema

log = logging.getLogger(__name__)
# MLflow announces a new SQLite store's migrations on stderr; a bad-input error must stay one line.
logging.getLogger("mlflow.store.db.utils").setLevel(logging.WARNING)

MAX_PARAM_CHARS = 6000
BATCH_LIMIT = 100  # MLflow accepts at most 100 params/tags per log_batch call
STATUS_TAG = "status"
INTERRUPTED = "interrupted"  # status of a run stopped by a signal or a failed write: a rerun resumes it
DATASET_ATTEMPTS = 3  # log_dataset: tries when parallel cells race to create the dataset row
KIND_TAG = "kind"  # what a run is when it is not a cell: "sweep" (a parent run), "report"
SWEEP_KIND = "sweep"
PARENT_RUN_TAG = "mlflow.parentRunId"  # how the UI nests a run under another, across processes
# A sweep hands its parent run's id to the cells under this name: MLflow's own MLFLOW_RUN_ID
# would make every cell *reuse* the parent run rather than nest under it.
PARENT_RUN_ENV = "LIGHTYOLO_PARENT_RUN_ID"
EXPERIMENT_KIND_TAG = "mlflow.experimentKind"
# The kind MLflow's UI gives model-training experiments (its experiment-type selector). The
# 3.17 UI still lands where its per-browser GenAI / Model training switch says: see
# experiment_ui_url for a link that opens the runs table.
TRAINING_KIND = "custom_model_development"
# The runs-table view a printed UI link opens: MLflow's shared view state, an experiment tag
# `mlflow.sharedViewState.<key>` that a `viewStateShareKey=<key>` link applies.
SHARED_VIEW_KEY = "lightyolo"
SHARED_VIEW_TAG = f"mlflow.sharedViewState.{SHARED_VIEW_KEY}"
SHARED_VIEW_PARAM = "viewStateShareKey"
GROUP_PARAMS = ("backbone", "neck", "operator", "dataset", "head")
DIGEST_CHARS = 36  # MLflow's datasets.digest column is VARCHAR(36)
# Ownership of a running cell (tags): a rerun leaves a RUNNING run alone while its owner lives.
OWNER_HOST_TAG = "owner.host"
OWNER_PID_TAG = "owner.pid"
HEARTBEAT_TAG = "owner.heartbeat"  # unix seconds of the owner's last sign of life
HEARTBEAT_TIMEOUT_S = 600.0  # no heartbeat for this long: the owner is taken to be gone
HEARTBEAT_INTERVAL_S = 60.0  # how often a running cell's heartbeat thread beats


def default_tracking_uri(base_dir: str | Path) -> str:
    """`sqlite:///<absolute base_dir>/mlflow.db`."""
    return f"sqlite:///{(Path(base_dir).expanduser().resolve() / 'mlflow.db').as_posix()}"


def sqlite_path(tracking_uri: str) -> Path | None:
    """The database file of a `sqlite:///` URI, else None."""
    prefix = "sqlite:///"
    return Path(tracking_uri[len(prefix) :]) if tracking_uri.startswith(prefix) else None


# One lock object per database (and process: a forked child must not use its parent's, which
# filelock refuses): FileLock is re-entrant per object (and per thread), so a block holding
# the lock can make a client, whose first use takes the lock again.
_STORE_LOCKS: dict[tuple[int, Path], FileLock] = {}
_READY_STORES: set[str] = set()  # SQLite URIs this process has opened under the lock


@contextlib.contextmanager
def store_lock(tracking_uri: str) -> Iterator[None]:
    """Serialise writes to a SQLite store (and its first opening, `_client`) across processes;
    a no-op for servers."""
    db = sqlite_path(tracking_uri)
    if db is None:
        yield
        return
    db.parent.mkdir(parents=True, exist_ok=True)
    key = (os.getpid(), db)
    if key not in _STORE_LOCKS:
        _STORE_LOCKS[key] = FileLock(str(db) + ".lock", timeout=600)
    lock = _STORE_LOCKS[key]
    with lock:
        yield


def _client(tracking_uri: str) -> MlflowClient:
    """A client of the store. A SQLite store is opened once per process under the store lock:
    MLflow creates and migrates a new database on first use, and two processes doing that at
    once corrupt it ("table _alembic_tmp_experiments already exists")."""
    if sqlite_path(tracking_uri) is None or tracking_uri in _READY_STORES:
        return MlflowClient(tracking_uri=tracking_uri)
    with store_lock(tracking_uri):
        client = MlflowClient(tracking_uri=tracking_uri)
        client.search_experiments(max_results=1)
    _READY_STORES.add(tracking_uri)
    return client


def check_experiment_name(name: str) -> str:
    """`name` unchanged, or ValueError when it cannot be one folder under the artifact root.

    A SQLite store keeps an experiment's artifacts in `mlartifacts/<name>/`, and the report
    writes `reports/<name>/`: a name with a path separator, `.`/`..`, or nothing at all would
    put files elsewhere (`experiment=../x`), so it is refused rather than silently renamed.
    """
    bad = not name.strip() or name in (".", "..") or any(c in name for c in "/\\\0")
    if bad:
        raise ValueError(
            f"experiment={name!r}: expected a name without '/', '\\', NUL and not '.' or '..' "
            "(it names the experiment's artifact folder)"
        )
    return name


def ensure_experiment(tracking_uri: str, name: str) -> str:
    """The id of experiment `name`, created (once, under the store lock) if missing, and
    tagged as a model-training experiment (`mlflow.experimentKind`, what the UI's experiment
    type shows); an experiment made before that tag existed gets it here.

    For a SQLite store the artifacts go to `mlartifacts/<name>/` beside the database.
    """
    check_experiment_name(name)
    wanted = {EXPERIMENT_KIND_TAG: TRAINING_KIND, SHARED_VIEW_TAG: headline_view_state()}
    with store_lock(tracking_uri):
        client = _client(tracking_uri)
        experiment = client.get_experiment_by_name(name)
        if experiment is not None:
            for key, value in wanted.items():
                if experiment.tags.get(key) != value:
                    client.set_experiment_tag(experiment.experiment_id, key, value)
            return experiment.experiment_id
        db = sqlite_path(tracking_uri)
        location = (db.parent / "mlartifacts" / name).as_uri() if db is not None else None
        try:
            return client.create_experiment(name, artifact_location=location, tags=wanted)
        except MlflowException as err:
            # Two processes starting on a server (no store lock) both found none: one created it.
            if err.error_code != "RESOURCE_ALREADY_EXISTS":
                raise
            return client.get_experiment_by_name(name).experiment_id


def headline_view_state() -> str:
    """The runs-table view that lightyolo's UI links open (MLflow's shared view state, kept as
    an experiment tag): the answer's columns shown from the start, mAP by split first."""
    metrics = [schema.split_metric("test", "map50_95"), schema.split_metric("test", "map50"), "params_m",
               "gflops_640", f"{schema.QUICK}/latency_ms", schema.split_metric("val", "map50_95")]
    columns = [*(f"metrics.`{name}`" for name in metrics), *(f"attributes.`{name}`" for name in ("Dataset", "Source", "Models"))]
    state = {
        "selectedColumns": columns, "columnOrder": columns,
        "columnWidths": {f"metrics.`{name}`": 140 for name in metrics},  # wide enough for the names
        "runsExpanded": {}, "runsPinned": [], "runsHidden": [],
        "runsVisibilityMap": {}, "runsHiddenMode": "FIRST_10_RUNS", "viewMaximized": False,
        "runListHidden": False, "isAccordionReordered": False, "useGroupedValuesInCharts": True,
        "hideEmptyCharts": True, "groupBy": None, "groupsExpanded": {}, "autoRefreshEnabled": True,
        "orderByKey": "attributes.start_time", "orderByAsc": False, "startTime": "ALL",
        "lifecycleFilter": "Active", "datasetsFilter": [], "modelVersionFilter": "All Runs", "searchFilter": "",
    }
    return json.dumps(state, sort_keys=True)


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


LOCAL_UI = "http://127.0.0.1:5000"  # where `mlflow ui` serves a local store by default


def ui_link(uri: str, experiment_id: str) -> str:
    """Where to look at an experiment: the tracking server's own UI, or for a local store
    `mlflow ui` at its default address (with the command that serves it)."""
    if uri.startswith(("http://", "https://")):
        return experiment_ui_url(uri, experiment_id)
    return f"{experiment_ui_url(LOCAL_UI, experiment_id)} (after: mlflow ui --backend-store-uri {uri})"


def experiment_ui_url(ui_url: str, experiment_id: str) -> str:
    """The MLflow UI's page of an experiment's runs table, for a server or `mlflow ui` at
    `ui_url`. MLflow 3.17's UI lands on the GenAI overview unless its GenAI / Model training
    switch (kept per browser) says otherwise; `workflowType=machine_learning` in the link does,
    so a printed link opens on the runs whatever the browser last chose."""
    return (f"{ui_url.rstrip('/')}/#/experiments/{experiment_id}/runs?workflowType=machine_learning"
            f"&{SHARED_VIEW_PARAM}={SHARED_VIEW_KEY}")


def cell_params(config: Mapping[str, Any], choices: Mapping[str, str]) -> dict[str, str]:
    """A cell's params: the flattened config plus the group choices under their own names
    (`backbone=ghost`, ...), which comparisons and parallel coordinates show (the config holds
    them only as `backbone._target_` class paths). A choice key that the flattened config also
    has would make two different values for one immutable param: ValueError."""
    params = flatten(config)
    for key in GROUP_PARAMS:
        if key not in choices:
            continue
        if key in params and params[key] != str(choices[key]):
            raise ValueError(
                f"config key {key!r} ({params[key]!r}) collides with the group choice param "
                f"{key}={choices[key]!r}"
            )
        params[key] = str(choices[key])
    return params


def source_tags(git_commit: str | None, source_name: str) -> dict[str, str]:
    """MLflow's own source tags (the UI's Source and User columns): the entry point, the
    commit (omitted when unknown) and the user."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):  # a uid with no name (some containers)
        user = str(os.getuid())
    tags = {"mlflow.source.name": source_name, "mlflow.source.type": "LOCAL", "mlflow.user": user}
    if git_commit:
        tags["mlflow.source.git.commit"] = git_commit
    return tags


def owner_tags(*, now: float | None = None) -> dict[str, str]:
    """This process as the owner of a running run: host, pid and a heartbeat (now)."""
    return {
        OWNER_HOST_TAG: socket.gethostname(),
        OWNER_PID_TAG: str(os.getpid()),
        HEARTBEAT_TAG: f"{time.time() if now is None else now:.3f}",
    }


def pid_alive(pid: int) -> bool:
    """Whether process `pid` runs on this machine (a zombie, killed but not reaped, does not)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # it exists, under another user
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True  # no /proc (not Linux): os.kill is all there is
    return stat.rsplit(")", 1)[-1].split()[0] != "Z"


def owner_is_alive(
    tags: Mapping[str, str],
    *,
    now: float,
    host: str,
    timeout_s: float = HEARTBEAT_TIMEOUT_S,
    pid_alive: Callable[[int], bool] = pid_alive,
) -> bool:
    """Whether the process that owns a RUNNING run (its `owner.*` tags) may still be working.

    The owner is gone when it recorded no heartbeat (a run from before ownership was
    recorded), when its last heartbeat is older than `timeout_s`, or when it ran on `host`
    (this machine) and its pid is dead. Another host's pid cannot be checked from here, so
    there the heartbeat alone decides.
    """
    try:
        beat = float(tags[HEARTBEAT_TAG])
    except (KeyError, ValueError):
        return False
    if now - beat > timeout_s:
        return False
    if tags.get(OWNER_HOST_TAG) == host:
        try:
            return pid_alive(int(tags[OWNER_PID_TAG]))
        except (KeyError, ValueError):
            return False
    return True


def parent_run_id_from_env() -> str | None:
    """The id of the sweep's parent run that the launching process handed down, if any."""
    return os.environ.get(PARENT_RUN_ENV) or None


def _chunks(items: list, size: int) -> Iterator[list]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


@dataclass
class RunTracker:
    """One MLflow run: the only handle the pipeline uses to log."""

    tracking_uri: str
    run_id: str
    _stop_heartbeat: threading.Event | None = field(default=None, repr=False, compare=False)
    # The claim record this run's owner holds (cell_claim): it beats with the run's heartbeat
    # and is released when the run ends.
    claim_name: str | None = field(default=None, repr=False, compare=False)

    def __getstate__(self) -> dict[str, Any]:
        # A heartbeat thread belongs to its process: a copy sent to another (a joblib job
        # receiving the sweep callback) carries none.
        return {**self.__dict__, "_stop_heartbeat": None}

    @classmethod
    def start(
        cls,
        tracking_uri: str,
        experiment: str,
        *,
        run_name: str,
        tags: Mapping[str, str],
        params: Mapping[str, str],
        parent_run_id: str | None = None,
    ) -> "RunTracker":
        """Create a run; with `parent_run_id` it is nested under that run (a sweep's cell)."""
        experiment_id = ensure_experiment(tracking_uri, experiment)
        tags = {k: str(v) for k, v in tags.items()}
        if parent_run_id:
            tags[PARENT_RUN_TAG] = parent_run_id
        with store_lock(tracking_uri):
            client = _client(tracking_uri)
            run = client.create_run(experiment_id, run_name=run_name, tags=tags)
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

    def heartbeat(self) -> None:
        """Record this process (host, pid) as the run's owner (and its claim's), alive now."""
        tags = owner_tags()
        self.set_tags(tags)
        if self.claim_name is not None:
            beat_claim_record(self.tracking_uri, self.claim_name, tags)

    def release_claim(self) -> None:
        """Stop the heartbeat and release the claim (if any): the cell is free to be claimed."""
        if self._stop_heartbeat is not None:
            self._stop_heartbeat.set()
        if self.claim_name is not None:
            release_claim_record(self.tracking_uri, self.claim_name)
            self.claim_name = None

    def start_heartbeat(self, interval_s: float = HEARTBEAT_INTERVAL_S) -> None:
        """Beat now, then every `interval_s` from a daemon thread until `finish`: an epoch
        longer than the heartbeat timeout (a full COCO epoch on a CPU) does not make a live
        cell look abandoned, and a killed process stops beating with it."""
        self.heartbeat()
        stop = threading.Event()

        def beat() -> None:
            while not stop.wait(interval_s):
                try:
                    self.heartbeat()
                except Exception as exc:  # a store hiccup must not kill training
                    log.warning("heartbeat of run %s not recorded: %s", self.run_id, exc)

        threading.Thread(target=beat, name=f"heartbeat-{self.run_id}", daemon=True).start()
        self._stop_heartbeat = stop

    def log_dataset(
        self, *, name: str, digest: str, source: str, splits: Mapping[str, int], context: str = "train"
    ) -> None:
        """Log the dataset as an input of the run (the UI's Dataset column and filter).

        It is described, not loaded (what `mlflow.data.meta_dataset.MetaDataset` records): the
        name, `digest` (a content fingerprint, cut to MLflow's 36 characters), the source path,
        and the split sizes as its profile, e.g. `{"train": 128, "val": 32}`.
        """
        dataset = Dataset(
            name=name,
            digest=digest[:DIGEST_CHARS],
            source_type="local",
            source=json.dumps({"uri": str(source)}),
            profile=json.dumps({split: int(n) for split, n in splits.items()}),
        )
        entry = DatasetInput(dataset, tags=[InputTag("mlflow.data.context", context)])
        for attempt in range(DATASET_ATTEMPTS):
            try:
                with store_lock(self.tracking_uri):
                    _client(self.tracking_uri).log_inputs(self.run_id, datasets=[entry])
                return
            except MlflowException as err:
                # A server inserts an experiment's dataset row once: two cells logging the
                # same new dataset at the same moment race on it, and the loser is refused
                # ("already exists"); asked again, the server links the existing row.
                if "already exists" not in str(err) or attempt + 1 == DATASET_ATTEMPTS:
                    raise
                time.sleep(0.2 * (attempt + 1))

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

    def log_text(self, text: str, artifact_file: str) -> None:
        """Write `text` and log it at `artifact_file` (e.g. a sweep's "summary.txt")."""
        path = Path(artifact_file)
        with tempfile.TemporaryDirectory() as tmp:
            local = Path(tmp) / path.name
            local.write_text(text)
            self.log_artifact(local, path.parent.as_posix() if path.parent.parts else None)

    def finish(self, status: str, error: str | None = None) -> None:
        """End the run: status 'completed' → FINISHED, 'failed' → FAILED with an error tag,
        'interrupted' → KILLED (a rerun resumes it from its last.pt). Stops the heartbeat
        thread and releases the claim, if any."""
        if self._stop_heartbeat is not None:
            self._stop_heartbeat.set()
        tags = {STATUS_TAG: status}
        if error is not None:
            tags["error"] = error
        self.set_tags(tags)
        terminal = {"failed": RunStatus.FAILED, INTERRUPTED: RunStatus.KILLED}.get(status, RunStatus.FINISHED)
        with store_lock(self.tracking_uri):
            _client(self.tracking_uri).set_terminated(
                self.run_id, status=RunStatus.to_string(terminal)
            )
        self.release_claim()

    def discard(self) -> None:
        """End the run and delete it (MLflow's soft delete: gone from the UI and from searches);
        stops its heartbeat thread, if any."""
        if self._stop_heartbeat is not None:
            self._stop_heartbeat.set()
        with store_lock(self.tracking_uri):
            client = _client(self.tracking_uri)
            client.set_terminated(self.run_id, status=RunStatus.to_string(RunStatus.FINISHED))
            client.delete_run(self.run_id)


def start_sweep_run(
    tracking_uri: str,
    experiment: str,
    *,
    name: str,
    tags: Mapping[str, str],
    params: Mapping[str, str],
) -> RunTracker:
    """The parent run of one multirun (tag `kind=sweep`, status `running`); its cells are
    started with `parent_run_id=` its id, and the UI nests them under it."""
    return RunTracker.start(
        tracking_uri, experiment, run_name=name,
        tags={**tags, KIND_TAG: SWEEP_KIND, STATUS_TAG: "running", **owner_tags()}, params=params,
    )


def sweep_parent_run(tracking_uri: str, experiment: str, sweep_id: str) -> tuple[str, str] | None:
    """(run id, run name) of the parent run of the sweep `sweep_id` (its directory), or None."""
    found = [run for run in _runs_of_kind(tracking_uri, experiment, SWEEP_KIND) if run.data.tags.get("sweep_id") == sweep_id]
    return (found[0].info.run_id, found[0].info.run_name) if found else None


def runs_named(tracking_uri: str, experiment: str, run_name: str, kind: str) -> list[str]:
    """Ids of the live runs of `experiment` named `run_name` whose tag `kind` is `kind`."""
    return [run.info.run_id for run in _runs_of_kind(tracking_uri, experiment, kind) if run.info.run_name == run_name]


def _runs_of_kind(tracking_uri: str, experiment: str, kind: str) -> list[Any]:
    """Live runs with tag `kind` (one of this module's constants: no quoting needed), newest
    first; names and paths are compared here, not inside MLflow's filter language."""
    return search_runs(tracking_uri, experiment, f"tags.{KIND_TAG} = '{kind}'")


def search_runs(tracking_uri: str, experiment: str, filter_string: str) -> list[Any]:
    """Live runs of `experiment` matching an MLflow filter, newest first ([] without the
    experiment); the one place the queries below open the experiment and search it."""
    client = _client(tracking_uri)
    exp = client.get_experiment_by_name(experiment)
    if exp is None:
        return []
    return list(client.search_runs([exp.experiment_id], filter_string=filter_string,
                                   order_by=["attributes.start_time DESC"], max_results=1000))


def log_onnx_model(tracking_uri: str, run_id: str, path: str | Path, *, name: str = "model") -> str:
    """Log the ONNX file at `path` as a model of run `run_id` (an MLflow logged model with the
    `onnx` flavour, in the run's experiment: the UI's Models column, `mlflow.onnx.load_model`,
    `mlflow.pyfunc`); returns its model URI (`models:/<model_id>`)."""
    import mlflow.onnx
    import onnx
    from mlflow.tracking._tracking_service.utils import _use_tracking_uri

    model = onnx.load(str(path))
    experiment_id = _client(tracking_uri).get_run(run_id).info.experiment_id
    # Pinned requirements: without them MLflow infers them by loading the model in a subprocess.
    requirements = [f"onnx=={version('onnx')}", f"onnxruntime=={version('onnxruntime')}"]
    # MLflow 3.17 files a logged model under the process's current experiment (the Default
    # one here), not its source run's: name the run's experiment for the call.
    with store_lock(tracking_uri), _use_tracking_uri(tracking_uri), _environ(
        MLFLOW_EXPERIMENT_ID=experiment_id, MLFLOW_EXPERIMENT_NAME=None
    ):
        info = mlflow.onnx.log_model(
            model, name=name, run_id=run_id, pip_requirements=requirements,
            save_as_external_data=False,
        )
    return info.model_uri


@contextlib.contextmanager
def _environ(**values: str | None) -> Iterator[None]:
    """Set (or, for None, unset) environment variables for the block, then restore them."""
    saved = {key: os.environ.get(key) for key in values}
    try:
        for key, value in values.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def experiment_names(tracking_uri: str) -> list[str]:
    """Experiment names, newest first (by creation time)."""
    experiments = _client(tracking_uri).search_experiments(view_type=ViewType.ACTIVE_ONLY)
    experiments.sort(key=lambda e: e.creation_time or 0, reverse=True)
    return [e.name for e in experiments if not is_claim_record(e.name)]


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
    tags: Mapping[str, str] = field(default_factory=dict)  # all of them (owner.* among them)


def runs_with_hash(
    tracking_uri: str, experiment: str, value: str, *, tag: str = "config_hash"
) -> list[PastRun]:
    """Runs of `experiment` whose tag `tag` (`config_hash`, or `recipe_hash` when completed
    cells are kept across code versions) equals `value`, newest first ([] if none)."""
    found = search_runs(tracking_uri, experiment, f"tags.{tag} = '{value}'")
    return [
        PastRun(
            run.info.run_id,
            run.info.status,
            run.data.tags.get(STATUS_TAG, ""),
            run.data.tags.get("output_dir"),
            run.info.start_time,
            dict(run.data.tags),
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


def require_store(tracking_uri: str, *, timeout_s: float | None = None) -> None:
    """For readers (report, bench, export), which never create or write a store: ValueError in
    one line when a SQLite store is missing, empty, damaged or not MLflow's, or a server does
    not answer (`check_store`)."""
    check_store(tracking_uri, timeout_s=timeout_s, must_exist=True)


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
        if tags.get(STATUS_TAG) != "completed" or tags.get(KIND_TAG) in ("report", SWEEP_KIND):
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


def log_exported_model(tracking_uri: str, run_id: str, onnx_path: str | Path, artifact_path: str) -> None:
    """An export of the run's weights: the file under `artifact_path` (e.g. "export/model.onnx")
    and an MLflow logged model of the run (the UI's Models column)."""
    log_run_artifact_as(tracking_uri, run_id, onnx_path, artifact_path)
    log_onnx_model(tracking_uri, run_id, onnx_path)


# --- Claims of cells (issue 24; the rules are lightyolo/cell_claim.py's) -------------------
# A claim record is an MLflow experiment with a unique name: every store (SQLite, a tracking
# server on PostgreSQL or MySQL) creates an experiment name at most once, atomically (a unique
# constraint), so creating one is a compare-and-set that needs no lock and no server change.
# Its tags say who holds it (owner.host / owner.pid / owner.heartbeat, from the moment it is
# created); releasing it deletes it (MLflow keeps a deleted name taken, so it is never won twice).

CLAIM_PREFIX = "lightyolo-claim"


@dataclass(frozen=True)
class ClaimRecord:
    """A claim record as read back: its tags, and whether its holder released it."""

    tags: Mapping[str, str]
    released: bool


def is_claim_record(experiment_name: str) -> bool:
    return experiment_name.startswith(CLAIM_PREFIX + ":")


def create_claim_record(tracking_uri: str, name: str, tags: Mapping[str, str]) -> bool:
    """Create the claim record `name` with `tags`: True when this call created it, False when
    it already existed (held, released or lost to a concurrent claimer)."""
    db = sqlite_path(tracking_uri)
    location = (db.parent / "mlartifacts" / ".claims").as_uri() if db is not None else None
    with store_lock(tracking_uri):
        try:
            _client(tracking_uri).create_experiment(
                name, artifact_location=location, tags={k: str(v) for k, v in tags.items()}
            )
        except MlflowException as err:
            if err.error_code == "RESOURCE_ALREADY_EXISTS":
                return False
            raise
    return True


def read_claim_record(tracking_uri: str, name: str) -> ClaimRecord | None:
    """The claim record `name` (deleted ones included), or None when there is none."""
    experiment = _client(tracking_uri).get_experiment_by_name(name)
    if experiment is None:
        return None
    return ClaimRecord(dict(experiment.tags), experiment.lifecycle_stage != "active")


def beat_claim_record(tracking_uri: str, name: str, tags: Mapping[str, str]) -> None:
    """Update the holder's tags (its heartbeat) on a held claim record."""
    with store_lock(tracking_uri):
        client = _client(tracking_uri)
        experiment = client.get_experiment_by_name(name)
        if experiment is None or experiment.lifecycle_stage != "active":
            return
        for key, value in tags.items():
            client.set_experiment_tag(experiment.experiment_id, key, str(value))


def release_claim_record(tracking_uri: str, name: str) -> None:
    """Release a claim (delete its record; a released name stays taken)."""
    with store_lock(tracking_uri):
        client = _client(tracking_uri)
        experiment = client.get_experiment_by_name(name)
        if experiment is not None and experiment.lifecycle_stage == "active":
            client.delete_experiment(experiment.experiment_id)


# --- Checking a store before using it (issue 24: fail fast, readers never create stores) ---

import sqlite3  # noqa: E402 (kept with the section that uses it)

STORE_CHECK_TIMEOUT_S = 5.0  # mlflow.store_check_timeout_s: how long a server has to answer
_SQLITE_HEADER = b"SQLite format 3\x00"


class StoreUnavailable(ValueError):
    """The tracking store cannot be used: one line naming it (a ValueError: the CLIs print it)."""


def check_store(tracking_uri: str, *, timeout_s: float | None = None, must_exist: bool = False) -> None:
    """Look at the store once, quickly, before anything is run or read: a SQLite file must be an
    intact MLflow database (missing is fine for a writer, which creates it, unless
    `must_exist`); a server must answer within `timeout_s` (one try, MLflow's retries off:
    otherwise a server that is down costs minutes of retries before the first error)."""
    db = sqlite_path(tracking_uri)
    if db is not None:
        if not db.exists():
            if must_exist:
                raise StoreUnavailable(f"no MLflow store at {db} (run a sweep there or pass tracking_uri=...)")
            return  # a writer creates it
        with store_lock(tracking_uri):  # not while another process creates and migrates it
            _check_sqlite_store(db)
        return
    timeout_s = STORE_CHECK_TIMEOUT_S if timeout_s is None else timeout_s
    with _environ(MLFLOW_HTTP_REQUEST_MAX_RETRIES="0", MLFLOW_HTTP_REQUEST_TIMEOUT=str(max(1, round(timeout_s)))):
        try:
            MlflowClient(tracking_uri=tracking_uri).search_experiments(max_results=1)
        except Exception as err:  # MLflow's and the HTTP/DB driver's errors alike
            raise StoreUnavailable(
                f"MLflow tracking store {tracking_uri} does not answer ({_short_reason(err)}; "
                f"checked with a {timeout_s:g} s timeout, mlflow.store_check_timeout_s)"
            ) from None


def _short_reason(err: Exception) -> str:
    text = str(err)
    for needle, reason in (("refused", "connection refused"), ("timed out", "timed out"),
                           ("Name or service not known", "unknown host"), ("ReadTimeout", "timed out")):
        if needle in text:
            return reason
    first = text.splitlines()[0] if text else type(err).__name__
    return first[:200]


def _check_sqlite_store(db: Path) -> None:
    if not db.is_file():
        raise StoreUnavailable(f"MLflow store {db}: not a file")
    if db.stat().st_size == 0:
        raise StoreUnavailable(f"MLflow store {db}: empty file (0 bytes), not an MLflow database; "
                               "restore it from a backup or point tracking_uri elsewhere")
    with open(db, "rb") as handle:
        if handle.read(len(_SQLITE_HEADER)) != _SQLITE_HEADER:
            raise StoreUnavailable(f"MLflow store {db}: not a SQLite database (its header is wrong)")
    try:
        connection = sqlite3.connect(f"{db.as_uri()}?mode=ro", uri=True, timeout=30)
        try:
            verdict = connection.execute("PRAGMA quick_check").fetchone()[0]
            tables = {row[0] for row in connection.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        finally:
            connection.close()
    except sqlite3.DatabaseError as err:
        raise StoreUnavailable(f"MLflow store {db}: damaged SQLite database ({err})") from None
    if verdict != "ok":
        raise StoreUnavailable(f"MLflow store {db}: damaged SQLite database (quick_check: {verdict})")
    if not {"experiments", "runs"} <= tables:
        raise StoreUnavailable(f"MLflow store {db}: a SQLite database without MLflow's tables")


# --- Sweep parent runs whose launcher is gone (issue 24) ------------------------------------


def running_sweep_runs(tracking_uri: str, experiment: str) -> list[PastRun]:
    """The experiment's sweep parent runs (tag kind=sweep) still marked RUNNING, newest first."""
    found = search_runs(tracking_uri, experiment, f"tags.{KIND_TAG} = '{SWEEP_KIND}' and attributes.status = 'RUNNING'")
    return [PastRun(r.info.run_id, r.info.status, r.data.tags.get(STATUS_TAG, ""), None, r.info.start_time,
                    dict(r.data.tags)) for r in found]


def nested_run_statuses(tracking_uri: str, experiment: str, parent_run_id: str) -> list[str]:
    """The `status` tags of the runs nested under `parent_run_id` (completed, failed, …)."""
    found = search_runs(tracking_uri, experiment, f"tags.`{PARENT_RUN_TAG}` = '{parent_run_id}'")
    return [r.data.tags.get(STATUS_TAG, "") for r in found]
