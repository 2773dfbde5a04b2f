"""Writing runs: `RunTracker`, the one handle the stages log through, and what a new run is
started with (params from the config, MLflow's source tags, the sweep's parent run)."""

from __future__ import annotations

import getpass
import json
import logging
import os
import tempfile
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mlflow.entities import Metric, Param, RunStatus, RunTag

from lightyolo.store import schema
from lightyolo.store.claims import beat_claim_record, release_claim_record
from lightyolo.store.client import Store
from lightyolo.store.datasets import log_dataset_input
from lightyolo.store.ownership import HEARTBEAT_INTERVAL_S, owner_tags

log = logging.getLogger(__name__)

MAX_PARAM_CHARS = 6000
BATCH_LIMIT = 100  # MLflow accepts at most 100 params/tags per log_batch call
# A sweep hands its parent run's id to the cells under this name: MLflow's own MLFLOW_RUN_ID
# would make every cell *reuse* the parent run rather than nest under it.
PARENT_RUN_ENV = "LIGHTYOLO_PARENT_RUN_ID"


def flat_config(config: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested mapping → {"a.b.c": value}, values unchanged (lists stay lists)."""
    flat: dict[str, Any] = {}
    for key, value in config.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(flat_config(value, dotted + "."))
        else:
            flat[dotted] = value
    return flat


def flatten(config: Mapping[str, Any]) -> dict[str, str]:
    """Nested mapping → {"a.b.c": "value"} with string values (MLflow params)."""
    return {key: (json.dumps(value) if isinstance(value, (list, tuple)) else str(value))[:MAX_PARAM_CHARS]
            for key, value in flat_config(config).items()}


def cell_params(config: Mapping[str, Any], choices: Mapping[str, str]) -> dict[str, str]:
    """A cell's params: the flattened config plus the group choices under their own names
    (`backbone=ghost`, ...), which comparisons and parallel coordinates show (the config holds
    them only as `backbone._target_` class paths). A choice key that the flattened config also
    has would make two different values for one immutable param: ValueError."""
    params = flatten(config)
    for key in schema.GROUP_PARAMS:
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


def parent_run_id_from_env() -> str | None:
    """The id of the sweep's parent run that the launching process handed down, if any."""
    return os.environ.get(PARENT_RUN_ENV) or None


def _chunks(items: list, size: int) -> Iterator[list]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


@dataclass
class RunTracker:
    """One MLflow run: the only handle the stages log through."""

    store: Store
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
        store: Store,
        experiment: str,
        *,
        run_name: str,
        tags: Mapping[str, str],
        params: Mapping[str, str],
        parent_run_id: str | None = None,
    ) -> "RunTracker":
        """Create a run; with `parent_run_id` it is nested under that run (a sweep's cell)."""
        experiment_id = store.ensure_experiment(experiment)
        tags = {k: str(v) for k, v in tags.items()}
        if parent_run_id:
            tags[schema.PARENT_RUN_TAG] = parent_run_id
        with store.lock():
            client = store.client
            run = client.create_run(experiment_id, run_name=run_name, tags=tags)
            entries = [Param(k, v) for k, v in params.items()]
            for chunk in _chunks(entries, BATCH_LIMIT):
                client.log_batch(run.info.run_id, params=chunk, synchronous=True)
        return cls(store, run.info.run_id)

    @classmethod
    def reopen(cls, store: Store, run_id: str, *, tags: Mapping[str, str]) -> "RunTracker":
        """Continue an existing run (a resumed cell); its params are already logged."""
        with store.lock():
            store.client.update_run(run_id, status=RunStatus.to_string(RunStatus.RUNNING))
        tracker = cls(store, run_id)
        tracker.set_tags(tags)
        return tracker

    def heartbeat(self) -> None:
        """Record this process (host, pid) as the run's owner (and its claim's), alive now."""
        tags = owner_tags()
        self.set_tags(tags)
        if self.claim_name is not None:
            beat_claim_record(self.store, self.claim_name, tags)

    def release_claim(self) -> None:
        """Stop the heartbeat and release the claim (if any): the cell is free to be claimed."""
        if self._stop_heartbeat is not None:
            self._stop_heartbeat.set()
        if self.claim_name is not None:
            release_claim_record(self.store, self.claim_name)
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
        """The dataset as an input of the run (datasets.py)."""
        log_dataset_input(self.store, self.run_id, name=name, digest=digest, source=source, splits=splits,
                          context=context)

    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        now = int(time.time() * 1000)
        entries = [Metric(k, float(v), now, step or 0) for k, v in metrics.items()]
        with self.store.lock():
            client = self.store.client
            for chunk in _chunks(entries, BATCH_LIMIT):
                client.log_batch(self.run_id, metrics=chunk, synchronous=True)

    def set_tags(self, tags: Mapping[str, str]) -> None:
        entries = [RunTag(k, str(v)[:MAX_PARAM_CHARS]) for k, v in tags.items()]
        with self.store.lock():
            client = self.store.client
            for chunk in _chunks(entries, BATCH_LIMIT):
                client.log_batch(self.run_id, tags=chunk, synchronous=True)

    def log_artifact(self, local_path: str | Path, artifact_dir: str | None = None) -> None:
        self.store.log_artifact(self.run_id, local_path, artifact_dir)

    def log_json(self, obj: Any, artifact_file: str) -> None:
        """Write `obj` as JSON and log it at `artifact_file` (e.g. "eval/coco_stats.json")."""
        self.log_text(json.dumps(obj), artifact_file)

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
        tags = {schema.STATUS_TAG: status}
        if error is not None:
            tags[schema.ERROR_TAG] = error
        self.set_tags(tags)
        terminal = {schema.FAILED: RunStatus.FAILED, schema.INTERRUPTED: RunStatus.KILLED}.get(status, RunStatus.FINISHED)
        with self.store.lock():
            self.store.client.set_terminated(self.run_id, status=RunStatus.to_string(terminal))
        self.release_claim()

    def discard(self) -> None:
        """End the run and delete it (MLflow's soft delete: gone from the UI and from searches);
        stops its heartbeat thread, if any."""
        if self._stop_heartbeat is not None:
            self._stop_heartbeat.set()
        with self.store.lock():
            client = self.store.client
            client.set_terminated(self.run_id, status=RunStatus.to_string(RunStatus.FINISHED))
            client.delete_run(self.run_id)


def start_sweep_run(
    store: Store, experiment: str, *, name: str, tags: Mapping[str, str], params: Mapping[str, str],
) -> RunTracker:
    """The parent run of one multirun (tag `kind=sweep`, status `running`); its cells are
    started with `parent_run_id=` its id, and the UI nests them under it."""
    return RunTracker.start(
        store, experiment, run_name=name,
        tags={**tags, schema.KIND_TAG: schema.SWEEP_KIND, schema.STATUS_TAG: schema.RUNNING, **owner_tags()},
        params=params,
    )
