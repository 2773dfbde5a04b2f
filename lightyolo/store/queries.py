"""Reading runs back: the questions the stages ask the store (is this cell done? which runs
did a sweep leave running? which runs has the bench to time?)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from lightyolo.store import schema
from lightyolo.store.client import Store
from lightyolo.store.health import require_store


@dataclass(frozen=True)
class PastRun:
    """What resume needs to know of an earlier run of the same cell."""

    run_id: str
    mlflow_status: str  # RUNNING (cut off, or still going), FINISHED, FAILED, KILLED
    status: str  # the `status` tag: completed / failed / resumed / running
    output_dir: str | None
    start_time: int
    tags: Mapping[str, str] = field(default_factory=dict)  # all of them (owner.* among them)


@dataclass(frozen=True)
class CompletedRun:
    """A finished cell run as the bench stage needs it."""

    run_id: str
    run_name: str
    tags: dict[str, str]
    params: dict[str, str]
    metrics: dict[str, float]


def _past_run(run: Any) -> PastRun:
    tags = dict(run.data.tags)
    return PastRun(run.info.run_id, run.info.status, tags.get(schema.STATUS_TAG, ""), tags.get(schema.OUTPUT_DIR_TAG),
                   run.info.start_time, tags)


def runs_with_hash(store: Store, experiment: str, value: str, *, tag: str = schema.CONFIG_HASH_TAG) -> list[PastRun]:
    """Runs of `experiment` whose tag `tag` (`config_hash`, or `recipe_hash` when completed
    cells are kept across code versions) equals `value`, newest first ([] if none)."""
    return [_past_run(run) for run in store.search_runs(experiment, f"tags.{tag} = '{value}'")]


def completed_runs(store: Store, experiment: str) -> list[CompletedRun]:
    """Runs of `experiment` with tag status=completed, minus the report's and sweeps' own (tag
    `kind`), oldest first. An unknown experiment → ValueError naming it and the known ones."""
    frame = store.runs_frame(experiment)
    found: list[CompletedRun] = []
    if frame.empty:
        return found
    for run_id in frame.sort_values("start_time")["run_id"]:
        run = store.get_run(run_id)
        tags = dict(run.data.tags)
        if tags.get(schema.STATUS_TAG) != schema.COMPLETED or tags.get(schema.KIND_TAG) in (
            schema.REPORT_KIND, schema.SWEEP_KIND
        ):
            continue
        found.append(CompletedRun(run_id, run.info.run_name, tags, dict(run.data.params), dict(run.data.metrics)))
    return found


def runs_to_measure(store: Store, experiment: str, run_ids: tuple[str, ...], stage: str) -> list[CompletedRun]:
    """The completed cells a stage (bench, deploy) works on: all of `experiment`'s, or only
    `run_ids`; ValueError in one line for a missing or damaged store, an unknown run id, or
    no completed cell."""
    require_store(store.uri)
    runs = completed_runs(store, experiment)
    if run_ids:
        unknown = sorted(set(run_ids) - {r.run_id for r in runs})
        if unknown:
            raise ValueError(f"experiment {experiment!r}: no completed run {', '.join(unknown)}")
        runs = [r for r in runs if r.run_id in run_ids]
    if not runs:
        raise ValueError(f"experiment {experiment!r} at {store.uri} has no completed runs; nothing to {stage}")
    return runs


def _runs_of_kind(store: Store, experiment: str, kind: str) -> list[Any]:
    """Live runs with tag `kind` (one of the schema's kinds: no quoting needed), newest first;
    names and paths are compared here, not inside MLflow's filter language."""
    return store.search_runs(experiment, f"tags.{schema.KIND_TAG} = '{kind}'")


def sweep_parent_run(store: Store, experiment: str, sweep_id: str) -> tuple[str, str] | None:
    """(run id, run name) of the parent run of the sweep `sweep_id` (its directory), or None."""
    found = [run for run in _runs_of_kind(store, experiment, schema.SWEEP_KIND)
             if run.data.tags.get(schema.SWEEP_ID_TAG) == sweep_id]
    return (found[0].info.run_id, found[0].info.run_name) if found else None


def runs_named(store: Store, experiment: str, run_name: str, kind: str) -> list[str]:
    """Ids of the live runs of `experiment` named `run_name` whose tag `kind` is `kind`."""
    return [run.info.run_id for run in _runs_of_kind(store, experiment, kind) if run.info.run_name == run_name]


def running_sweep_runs(store: Store, experiment: str) -> list[PastRun]:
    """The experiment's sweep parent runs (tag kind=sweep) still marked RUNNING, newest first."""
    found = store.search_runs(
        experiment, f"tags.{schema.KIND_TAG} = '{schema.SWEEP_KIND}' and attributes.status = 'RUNNING'")
    return [PastRun(r.info.run_id, r.info.status, r.data.tags.get(schema.STATUS_TAG, ""), None, r.info.start_time,
                    dict(r.data.tags)) for r in found]


def nested_run_statuses(store: Store, experiment: str, parent_run_id: str) -> list[str]:
    """The `status` tags of the runs nested under `parent_run_id` (completed, failed, …)."""
    found = store.search_runs(experiment, f"tags.`{schema.PARENT_RUN_TAG}` = '{parent_run_id}'")
    return [r.data.tags.get(schema.STATUS_TAG, "") for r in found]
