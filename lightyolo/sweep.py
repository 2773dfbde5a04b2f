"""Sweeps that survive: progress, per-cell results and the end-of-sweep summary.

Hydra's launchers run the cells (basic: one after another; joblib: in parallel on this
machine; submitit: on SLURM, or `submitit_local` here). Each cell writes
`<sweep dir>/<job>/cell_result.json` whatever happens to it; `SweepCallback` — configured in
`conf/config.yaml` under `hydra.callbacks` — prepares the MLflow experiment and opens the
sweep's parent run before any job starts (its id goes to the jobs in
`store.runs.PARENT_RUN_ENV`, so every launcher's cells nest under it), and at the end reads
those files back, prints the summary table, logs it on the parent run, closes that run, and
ends the process with exit status 1 when any cell failed, so that
`python -m lightyolo.run -m …` exits non-zero.

`python -m lightyolo.sweep NAME [overrides]` is short for
`python -m lightyolo.run -m -cd <sweeps dir> -cn NAME [overrides]`, the sweeps dir being the
built-in one or a LIGHTYOLO_CONFIG_PATH directory's `sweeps/` (lightyolo.configs.sweep_file);
with `seeds=adaptive` it hands over to lightyolo.adaptive_sweep (seeds as comparisons need them).
"""

from __future__ import annotations

import json
import logging
import math
import os
import socket
import sys
import time
from pathlib import Path
from typing import Any

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from lightyolo import adaptive_sweep
from lightyolo.bench.experiment import BenchError, BenchSettings, bench_runs
from lightyolo.cell_result import CellResult, read_results
from lightyolo.configs import ConfigPathError, sweep_dirs, sweep_file, sweep_names
from lightyolo.pipeline import git_sha
from lightyolo.run import cli, exit_on_bad_experiment  # the one CLI; run.py never imports this module
from lightyolo.settings import tracking_uri
from lightyolo.store import schema
from lightyolo.store.client import Store
from lightyolo.store.health import check_store
from lightyolo.store.ownership import HEARTBEAT_TIMEOUT_S, owner_is_alive
from lightyolo.store.queries import nested_run_statuses, running_sweep_runs
from lightyolo.store.runs import MAX_PARAM_CHARS, PARENT_RUN_ENV, RunTracker, source_tags, start_sweep_run
from lightyolo.store.ui import ui_link

log = logging.getLogger(__name__)



def sweep_grid(task_overrides: list[str], sweeper_params: dict[str, Any] | None) -> dict[str, str]:
    """The swept keys and their values: the sweep file's `hydra.sweeper.params`, replaced or
    extended by the command line's overrides of those keys and its own sweeps (`a=1,2`)."""
    grid = {str(k): str(v) for k, v in (sweeper_params or {}).items()}
    parser = OverridesParser.create()
    for override in task_overrides:
        key, _, value = override.partition("=")
        if key in grid or parser.parse_override(override).is_sweep_override():
            grid[key] = value
    return grid


def count_cells(task_overrides: list[str], sweeper_params: dict[str, Any] | None) -> int:
    """How many jobs the basic sweeper makes: the product of every swept key's values
    (command-line overrides replace the sweep file's `hydra.sweeper.params` of the same key)."""
    params = sweep_grid(task_overrides, sweeper_params)
    parsed = OverridesParser.create().parse_overrides([f"{k}={v}" for k, v in params.items()])
    return math.prod(
        len(list(o.sweep_string_iterator())) for o in parsed if o.is_sweep_override()
    )


def progress_line(job_num: int, cells: int, started: float, now: float) -> str:
    """'cell 3/8, 1m20s elapsed, ETA 2m40s' (ETA from the mean time of the cells before)."""
    elapsed = now - started
    text = f"cell {job_num + 1}/{cells}, {_duration(elapsed)} elapsed"
    if job_num > 0:
        text += f", ETA {_duration(elapsed / job_num * (cells - job_num))}"
    return text


def _duration(seconds: float) -> str:
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{secs:02d}s"


def summary_table(results: list[CellResult], expected: int) -> str:
    """The end-of-sweep table: cell, status, mAP50-95, time (and the error of failures)."""
    width = max([len("cell"), *(len(r.cell) for r in results)])
    status = max([10, *(len(r.status) for r in results)])  # "running elsewhere" fits too
    lines = [f"{'cell':<{width}} {'status':<{status}} {'mAP50-95':>9} {'time':>8}"]
    for r in results:
        score = f"{r.map50_95:.4f}" if r.map50_95 is not None else "-"
        lines.append(f"{r.cell:<{width}} {r.status:<{status}} {score:>9} {_duration(r.seconds):>8}")
        if r.error:
            lines.append(f"    error: {r.error.splitlines()[0][:200]}")
    missing = expected - len(results)
    if missing > 0:
        lines.append(f"{missing} cell(s) left no result (the job died before reporting)")
    return "\n".join(lines)


class SweepCallback(Callback):
    """Hydra callback: experiment, parent run, progress and the summary of a multirun."""

    def __init__(self) -> None:
        self._parent: RunTracker | None = None
        self._experiment_id = ""
        # The grid's size and start, set before any job: the jobs' on_job_start reads them off
        # this object, which joblib and submitit pickle into their workers with the launcher.
        self._cells = 0
        self._started: float | None = None

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        exit_on_bad_experiment(config.experiment)
        task = list(config.hydra.overrides.task)
        grid = sweep_grid(task, config.hydra.sweeper.get("params"))
        cells = count_cells(task, config.hydra.sweeper.get("params"))
        self._cells, self._started = cells, time.time()
        sweep_dir = str(config.hydra.sweep.dir)
        # Created once here, before parallel jobs could race to create it. A store that does
        # not answer, or a parent run that cannot be made, stops the sweep before any cell.
        try:
            uri = tracking_uri(config.mlflow.tracking_uri, config.hydra.runtime.cwd)
            check_store(uri, timeout_s=config.mlflow.get("store_check_timeout_s"))
            self._experiment_id = Store(uri).ensure_experiment(config.experiment)
            self._parent = start_sweep_run(
                Store(uri), config.experiment, name=f"sweep-{Path(sweep_dir).name}",
                tags={schema.SWEEP_ID_TAG: sweep_dir, **source_tags(git_sha(), "lightyolo.sweep")},
                params={
                    schema.SWEEP_OVERRIDES_PARAM: " ".join(task)[:MAX_PARAM_CHARS],
                    schema.SWEEP_GRID_PARAM: json.dumps(grid, sort_keys=True)[:MAX_PARAM_CHARS],
                    schema.SWEEP_DIR_PARAM: sweep_dir,
                },
            )
        except Exception as err:  # StoreUnavailable, or MLflow's own errors (unimported here)
            first = str(err).splitlines()[0] if str(err) else type(err).__name__
            print(f"error: {first[:300]}; no cell was launched", file=sys.stderr)
            raise SystemExit(2) from None  # Hydra turns a callback's Exception into a warning
        self._parent.start_heartbeat()
        end_abandoned_sweeps(Store(uri), config.experiment, self._parent.run_id,
                             float(config.mlflow.get("heartbeat_timeout_s") or HEARTBEAT_TIMEOUT_S))
        # Not MLFLOW_RUN_ID: with it a cell would log into the parent run instead of nesting.
        os.environ[PARENT_RUN_ENV] = self._parent.run_id
        log.info(
            "sweep of %d cells into %s, MLflow experiment %r, parent run %s",
            cells, sweep_dir, config.experiment, self._parent.run_id,
        )

    def on_job_start(self, config: DictConfig, **kwargs: Any) -> None:
        if self._started is None or "sweep" not in config.hydra:
            return
        log.info("%s", progress_line(int(config.hydra.job.num), self._cells, self._started, time.time()))

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        # Hydra's multirun returns nothing to its caller (hydra.main drops the launcher's job
        # returns), so the sweep's result leaves as the exit status; SystemExit, unlike an
        # Exception, is not turned into a warning by Hydra. Ours is the first callback, whose
        # on_multirun_end Hydra calls last.
        if self._end(config):
            raise SystemExit(1)

    def _end(self, config: DictConfig) -> int:
        """The summary, the parent run closed, the bench stage; returns the failed cells."""
        expected = self._cells
        results = read_results(Path(config.hydra.sweep.dir))
        failed = sum(r.status == "failed" for r in results) + max(expected - len(results), 0)
        table = summary_table(results, expected)
        headline = f"sweep {config.hydra.sweep.dir}: {len(results) - failed}/{expected} cells ok"
        os.environ.pop(PARENT_RUN_ENV, None)  # a later run of this process is no cell of it
        print(f"\n{headline}")
        print(table, flush=True)
        if self._parent is None:
            return failed
        link = ui_link(self._parent.store.uri, self._experiment_id)
        if results and not failed and all(r.status == "skipped" for r in results):
            # A rerun of a finished grid: its cells stay under the sweep that trained them,
            # and their bench figures stand; no empty parent run, no second bench stage.
            self._parent.discard()
            print(f"nothing to train: every cell had completed; MLflow: {link}", flush=True)
            return failed
        self._parent.log_text(f"{headline}\n{table}\n", schema.SWEEP_SUMMARY_ARTIFACT)
        summary, best_cell = sweep_summary(results, expected, failed)
        self._parent.log_metrics(summary)
        if best_cell:
            self._parent.set_tags({schema.SWEEP_BEST_CELL_TAG: best_cell})
        bench_after_sweep(config, self._parent.store.uri, results)
        self._parent.finish(
            schema.FAILED if failed else schema.COMPLETED,
            error=f"{failed} of {expected} cells failed" if failed else None,
        )
        print(f"MLflow: {link}", flush=True)
        return failed


def sweep_summary(results: list[CellResult], expected: int, failed: int) -> tuple[dict[str, float], str | None]:
    """The parent run's summary metrics (store/schema.py) and the name of the cell with the
    best reported mAP50-95 among those this sweep trained (None if none has one)."""
    summary = {
        schema.SWEEP_CELLS: float(expected),
        schema.SWEEP_TRAINED: float(sum(r.status == "completed" for r in results)),
        schema.SWEEP_SKIPPED: float(sum(r.status == "skipped" for r in results)),
        schema.SWEEP_FAILED: float(failed),
    }
    scored = [r for r in results if r.status == schema.COMPLETED and r.map50_95 is not None]
    if not scored:
        return summary, None
    best = max(scored, key=lambda r: r.map50_95)
    summary[schema.SWEEP_BEST_MAP] = best.map50_95
    return summary, best.cell.split(" #")[0]


def end_abandoned_sweeps(store: Store, experiment: str, current_run_id: str, timeout_s: float) -> list[str]:
    """End the experiment's sweep parent runs whose launcher is gone (killed: its
    on_multirun_end never ran), so none stays RUNNING forever: FAILED, with the count of the
    cells nested under it that completed; their cut-off cells are resumed under the current
    sweep (`pipeline.open_run`). Returns the ids ended."""
    now, host, ended = time.time(), socket.gethostname(), []
    for old in running_sweep_runs(store, experiment):
        if old.run_id == current_run_id or owner_is_alive(old.tags, now=now, host=host, timeout_s=timeout_s):
            continue
        statuses = nested_run_statuses(store, experiment, old.run_id)
        done = sum(status == schema.COMPLETED for status in statuses)
        RunTracker(store, old.run_id).finish(
            schema.FAILED, error=f"launcher cut off: {done} of the {len(statuses)} cells nested here completed; "
                            f"the grid is continued by sweep run {current_run_id}",
        )
        log.info("ended abandoned sweep run %s (%d/%d cells completed)", old.run_id, done, len(statuses))
        ended.append(old.run_id)
    return ended


def bench_settings(stage: DictConfig) -> BenchSettings:
    """`bench.stage` of the config → the bench stage's settings."""
    values = OmegaConf.to_container(stage, resolve=True)
    values["runtimes"] = tuple(values.get("runtimes", BenchSettings.runtimes))
    values["precisions"] = tuple(values.get("precisions", BenchSettings.precisions))
    return BenchSettings(**values)


def bench_after_sweep(config: DictConfig, uri: str, results: list[CellResult]) -> None:
    """Time this sweep's completed cells interleaved, in the launching process (never inside
    parallel jobs, which would time each other), unless `bench.after_sweep=false`."""
    if not config.bench.get("after_sweep", False):
        return
    run_ids = tuple(r.run_id for r in results if r.run_id and r.status in ("completed", "skipped"))
    if not run_ids:
        log.warning("bench stage skipped: no completed cell in this sweep")
        return
    if not any(r.status == "completed" for r in results):
        log.info("bench stage skipped: no cell was trained in this sweep, their figures stand "
                 "(rerun it: python -m lightyolo.bench experiment=%s)", config.experiment)
        return
    try:
        settings = bench_settings(config.bench.stage)
        bench_runs(uri, config.experiment, settings, run_ids, log=log.info)
    except (BenchError, TypeError) as err:  # a failed bench never loses the cells' results
        log.warning("bench stage skipped: %s (rerun it: python -m lightyolo.bench experiment=%s)",
                    err, config.experiment)


def main() -> None:
    """`python -m lightyolo.sweep NAME [overrides]`."""
    try:
        names = ", ".join(sweep_names())
    except ConfigPathError as error:  # a LIGHTYOLO_CONFIG_PATH entry that is no directory
        print(f"error: {error}", file=sys.stderr)
        raise SystemExit(2) from None
    usage = f"usage: python -m lightyolo.sweep NAME [key=value ...]; sweeps: {names}"
    if sys.argv[1:2] in (["-h"], ["--help"]):  # NAME --help: the sweep's own config and keys (Hydra's)
        print(f"{usage}\nkeys: those of `lightyolo run --help`, and seeds=adaptive (docs/sweeps.md)")
        raise SystemExit(0)
    if len(sys.argv) < 2 or sys.argv[1].startswith("-"):
        print(usage, file=sys.stderr)
        raise SystemExit(2)
    name, overrides = sys.argv[1], sys.argv[2:]
    path = sweep_file(name)
    if path is None:
        where = ", ".join(str(d) for d in sweep_dirs())
        print(f"error: no sweep {name!r} in {where}; sweeps: {names}", file=sys.stderr)
        raise SystemExit(2)
    if adaptive_sweep.ADAPTIVE in overrides:  # seeds launched as the comparisons need them
        raise SystemExit(adaptive_sweep.main(name, path, overrides))
    # --cfg / --info show the sweep's config: Hydra takes them alone, without --multirun
    shows = any(arg.split("=")[0] in ("-c", "--cfg", "-i", "--info") for arg in overrides)
    sys.argv = [sys.argv[0], *([] if shows else ["-m"]), "-cd", str(path.parent), "-cn", name, *overrides]
    cli()


if __name__ == "__main__":
    main()
