"""`python -m lightyolo.run [-m] key=value ...`: the Hydra face of `lightyolo.pipeline.run`.

The one CLI module: `python -m lightyolo.sweep NAME` only rewrites its arguments and calls
`cli` here.
"""

from __future__ import annotations

import logging
import signal
import sys
import time
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig

from lightyolo import hydra_searchpath, pipeline
from lightyolo.cell_result import CellResult
from lightyolo.configs import GROUPS, RECIPE_GROUPS, ConfigPathError, config_dir, config_dirs, group_options
from lightyolo.models.contracts import ContractError
from lightyolo.settings import group_choices, run_name, tracking_uri
from lightyolo.store.client import Store, check_experiment_name
from lightyolo.store.ui import ui_link
from lightyolo.train import interrupt

log = logging.getLogger(__name__)


def unknown_choice_error(argv: list[str], conf_dir: Path | None = None) -> str | None:
    """A one-line error for `group=value` overrides naming no yaml in <dir>/<group>/, the dirs
    being conf/, LIGHTYOLO_CONFIG_PATH's and argv's -cd / hydra.searchpath ones (or `conf_dir`).

    Hydra's own message spans several lines; this one names the valid options."""
    try:
        dirs = [conf_dir] if conf_dir else config_dirs(argv)
    except ConfigPathError as error:
        return f"error: {error}"
    for arg in argv:
        group, sep, value = arg.partition("=")
        if not sep or group not in (*GROUPS, *RECIPE_GROUPS) or "(" in value:
            continue  # not a group choice, or a sweep function like choice(...)
        valid = group_options(group, dirs)
        for option in value.split(","):
            if option not in valid:
                return (
                    f"error: unknown {group} {option!r} in '{arg}'; "
                    f"valid {group} options: {', '.join(valid)}"
                )
    return None


def exit_on_bad_experiment(name: str) -> None:
    """Stop with one line on stderr and exit status 2 when `experiment` cannot name an
    artifact folder (`experiment=../x`), before any run or directory is made for it."""
    try:
        check_experiment_name(str(name))
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        raise SystemExit(2) from None


@hydra.main(version_base="1.3", config_path=str(config_dir()), config_name="config")
def main(cfg: DictConfig) -> float | None:
    exit_on_bad_experiment(cfg.experiment)
    hydra_cfg = HydraConfig.get()
    if hydra_cfg.mode != RunMode.MULTIRUN:
        try:
            result = pipeline.run(cfg, output_dir=Path(hydra_cfg.runtime.output_dir))
        # Bad input (a variant breaking the contract, a missing or malformed dataset file): one
        # line naming it, not Hydra's traceback; the pipeline has recorded the FAILED run.
        except (ContractError, ValueError, OSError) as error:
            log.debug("run failed", exc_info=True)
            print(f"error: {error}", file=sys.stderr)
            raise SystemExit(1) from None
        except KeyboardInterrupt as stop:  # SIGINT / SIGTERM: the run is marked resumable
            exit_interrupted(stop)
        print(where_results_are(cfg, result), flush=True)
        return result.metrics.get("map50_95")
    return run_cell(cfg, hydra_cfg)


def where_results_are(cfg: DictConfig, result: pipeline.RunResult) -> str:
    """A single run's last line: its MLflow run, where to look at it, and its files."""
    uri = tracking_uri(cfg.mlflow.tracking_uri, HydraConfig.get().runtime.cwd)
    link = ui_link(uri, Store(uri).ensure_experiment(str(cfg.experiment)))
    files = f"; files: {result.output_dir}" if result.output_dir else ""
    return f"MLflow run {result.run_id} ({result.status}) in experiment {cfg.experiment!r}: {link}{files}"


def exit_interrupted(stop: KeyboardInterrupt) -> None:
    """One line for a run stopped by a signal, and the shell's exit status for it (130 / 143)."""
    signum = getattr(stop, "signum", signal.SIGINT)
    print(f"interrupted: {str(stop) or signal.Signals(signum).name}; the run is resumable: run the same command again",
          file=sys.stderr)
    raise SystemExit(128 + signum) from None


def run_cell(cfg: DictConfig, hydra_cfg: DictConfig) -> float | None:
    """One cell of a multirun: its failure is recorded, never raised, so the sweep goes on."""
    job_dir = Path(hydra_cfg.runtime.output_dir)
    cell = f"{run_name(group_choices(cfg), cfg.seed)} #{hydra_cfg.job.num}"
    started = time.perf_counter()
    try:
        result = pipeline.run(cfg, output_dir=job_dir, sweep_id=str(hydra_cfg.sweep.dir))
    except Exception as exc:
        log.exception("cell %s failed", cell)
        CellResult(cell, "failed", None, time.perf_counter() - started,
                   error=f"{type(exc).__name__}: {exc}").write(job_dir)
        return None
    except KeyboardInterrupt as stop:  # the run is saved as interrupted (resumable)
        interrupt.hand_back(stop)  # SLURM's time limit: submitit requeues this job and exits
        if not interrupt.in_scheduler_job():
            raise  # one process runs the sweep: it stops with its cell
        # A job of its own (scancel, preemption without requeue): this cell failed, the sweep
        # goes on and its summary says so; a rerun resumes the run.
        CellResult(cell, "failed", None, time.perf_counter() - started,
                   error=f"interrupted: {stop}; resumable: run the sweep again").write(job_dir)
        return None
    score = result.metrics.get("map50_95")
    CellResult(cell, result.status, score, time.perf_counter() - started, result.run_id).write(job_dir)
    return score


def cli() -> None:
    error = unknown_choice_error(sys.argv[1:])
    if error:
        print(error, file=sys.stderr)
        raise SystemExit(2)
    hydra_searchpath.register()  # LIGHTYOLO_CONFIG_PATH joins the groups
    try:
        main()  # a multirun with failed cells ends in SweepCallback.on_multirun_end: exit status 1
    except KeyboardInterrupt as stop:  # a multirun's cell stopped by a signal: the sweep stops too
        exit_interrupted(stop)


if __name__ == "__main__":
    cli()
