"""`Store`: one tracking store (a SQLite file or a server), bound to its URI — experiments,
searches, run lookups and artifacts. Every other module reaches MLflow through it."""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path
from typing import Any

import pandas as pd
from mlflow.entities import ViewType
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from lightyolo.store.environ import scoped_environ
from lightyolo.store.locks import open_client, sqlite_path, store_lock
from lightyolo.store.ui import experiment_tags

CLAIM_PREFIX = "lightyolo-claim"  # experiments named so are claim records (claims.py), not experiments
# MLflow's artifact progress bar goes to stderr, where the CLIs print their one-line errors.
PROGRESS_BAR_ENV = "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"


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


def is_claim_record(experiment_name: str) -> bool:
    return experiment_name.startswith(CLAIM_PREFIX + ":")


@dataclass(frozen=True)
class Store:
    """The tracking store at `uri`. Cheap to make and to pickle (a joblib job gets a copy):
    the MLflow client is opened per call, once per process for a SQLite file."""

    uri: str

    @property
    def client(self) -> MlflowClient:
        return open_client(self.uri)

    def lock(self):  # noqa: ANN201 (a context manager)
        """The store's write lock (`locks.store_lock`): a no-op for a server."""
        return store_lock(self.uri)

    def artifact_root(self, name: str) -> str | None:
        """Where a new experiment's artifacts go: `mlartifacts/<name>/` beside a SQLite
        database; a server decides for itself."""
        db = sqlite_path(self.uri)
        return (db.parent / "mlartifacts" / name).as_uri() if db is not None else None

    # --- experiments ----------------------------------------------------------------------

    def ensure_experiment(self, name: str) -> str:
        """The id of experiment `name`, created (once, under the store lock) if missing, and
        tagged as a model-training experiment opening on lightyolo's view (`ui.py`); an
        experiment made before those tags existed gets them here."""
        check_experiment_name(name)
        wanted = experiment_tags()
        with self.lock():
            client = self.client
            experiment = client.get_experiment_by_name(name)
            if experiment is not None:
                for key, value in wanted.items():
                    if experiment.tags.get(key) != value:
                        client.set_experiment_tag(experiment.experiment_id, key, value)
                return experiment.experiment_id
            try:
                return client.create_experiment(name, artifact_location=self.artifact_root(name), tags=wanted)
            except MlflowException as err:
                # Two processes starting on a server (no store lock) both found none: one created it.
                if err.error_code != "RESOURCE_ALREADY_EXISTS":
                    raise
                return client.get_experiment_by_name(name).experiment_id

    def experiment_names(self) -> list[str]:
        """Experiment names, newest first (by creation time); claim records left out."""
        experiments = self.client.search_experiments(view_type=ViewType.ACTIVE_ONLY)
        experiments.sort(key=lambda e: e.creation_time or 0, reverse=True)
        return [e.name for e in experiments if not is_claim_record(e.name)]

    # --- runs -----------------------------------------------------------------------------

    def search_runs(self, experiment: str, filter_string: str) -> list[Any]:
        """Live runs of `experiment` matching an MLflow filter, newest first ([] without the
        experiment); the one place the queries (queries.py) open the experiment and search it."""
        client = self.client
        exp = client.get_experiment_by_name(experiment)
        if exp is None:
            return []
        return list(client.search_runs([exp.experiment_id], filter_string=filter_string,
                                       order_by=["attributes.start_time DESC"], max_results=1000))

    def get_run(self, run_id: str) -> Any:
        return self.client.get_run(run_id)

    def run_exists(self, run_id: str) -> bool:
        """Whether `run_id` is a run of the store (False for an unknown id, never an exception)."""
        db = sqlite_path(self.uri)
        if db is not None and not db.is_file():
            return False
        try:
            self.client.get_run(run_id)
        except Exception:  # MlflowException for an unknown id; its type is MLflow-internal
            return False
        return True

    def runs_frame(self, experiment: str) -> pd.DataFrame:
        """Every run of `experiment` as one row: run_id, run_name, mlflow_status, start/end
        time (ms), then `tags.<k>`, `params.<k>` and `metrics.<k>` (final values) columns.
        An unknown experiment → ValueError naming it and the known ones."""
        client = self.client
        exp = client.get_experiment_by_name(experiment)
        if exp is None:
            known = ", ".join(self.experiment_names()) or "none"
            raise ValueError(f"no MLflow experiment named {experiment!r} at {self.uri} (known: {known})")
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

    def metric_history(self, run_id: str, key: str) -> list[tuple[int, float]]:
        """(step, value) pairs of one metric of one run, by step."""
        return sorted((m.step, m.value) for m in self.client.get_metric_history(run_id, key))

    # --- artifacts ------------------------------------------------------------------------

    def has_artifact(self, run_id: str, artifact_path: str) -> bool:
        """Whether the run logged a file at `artifact_path` (e.g. "weights/best.pt")."""
        parent = Path(artifact_path).parent.as_posix()
        listed = self.client.list_artifacts(run_id, None if parent == "." else parent)
        return any(entry.path == artifact_path and not entry.is_dir for entry in listed)

    def download_artifact(self, run_id: str, artifact_path: str, directory: str | Path) -> Path:
        """Download one artifact file of a run into `directory`; returns the local path."""
        Path(directory).mkdir(parents=True, exist_ok=True)
        with scoped_environ(**{PROGRESS_BAR_ENV: "false"}):
            local = self.client.download_artifacts(run_id, artifact_path, str(directory))
        return Path(local)

    def log_artifact(self, run_id: str, local_path: str | Path, artifact_dir: str | None = None) -> None:
        with self.lock():
            self.client.log_artifact(run_id, str(local_path), artifact_dir)

    def log_artifact_as(self, run_id: str, local_path: str | Path, artifact_path: str) -> None:
        """Log `local_path` on the run under the exact name `artifact_path` (e.g. "export/model.onnx")."""
        target = Path(artifact_path)
        with tempfile.TemporaryDirectory() as tmp:
            staged = Path(tmp) / target.name
            staged.write_bytes(Path(local_path).read_bytes())
            parent = target.parent.as_posix()
            self.log_artifact(run_id, staged, None if parent == "." else parent)

    def log_exported_model(self, run_id: str, onnx_path: str | Path, artifact_path: str) -> None:
        """An export of the run's weights: the file under `artifact_path` (e.g. "export/model.onnx")
        and an MLflow logged model of the run (the UI's Models column)."""
        self.log_artifact_as(run_id, onnx_path, artifact_path)
        self.log_onnx_model(run_id, onnx_path)

    def log_onnx_model(self, run_id: str, path: str | Path, *, name: str = "model") -> str:
        """Log the ONNX file at `path` as a model of run `run_id` (an MLflow logged model with the
        `onnx` flavour, in the run's experiment: the UI's Models column, `mlflow.onnx.load_model`,
        `mlflow.pyfunc`); returns its model URI (`models:/<model_id>`)."""
        import mlflow.onnx
        import onnx
        from mlflow.tracking._tracking_service.utils import _use_tracking_uri

        model = onnx.load(str(path))
        experiment_id = self.client.get_run(run_id).info.experiment_id
        # Pinned requirements: without them MLflow infers them by loading the model in a subprocess.
        requirements = [f"onnx=={version('onnx')}", f"onnxruntime=={version('onnxruntime')}"]
        # MLflow 3.17 files a logged model under the process's current experiment (the Default
        # one here), not its source run's: name the run's experiment for the call.
        with self.lock(), _use_tracking_uri(self.uri), scoped_environ(
            MLFLOW_EXPERIMENT_ID=experiment_id, MLFLOW_EXPERIMENT_NAME=None
        ):
            info = mlflow.onnx.log_model(
                model, name=name, run_id=run_id, pip_requirements=requirements,
                save_as_external_data=False,
            )
        return info.model_uri
