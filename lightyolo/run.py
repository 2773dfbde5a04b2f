"""`python -m lightyolo.run [-m] key=value ...`: the Hydra face of `lightyolo.pipeline.run`."""

from __future__ import annotations

import logging
import os
import sys
import time
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, open_dict

from lightyolo import pipeline, sweep
from lightyolo.sweep import CellResult
from lightyolo.tracking import default_tracking_uri

log = logging.getLogger(__name__)

CONF_DIR = Path(__file__).resolve().parent.parent / "conf"
CHECKED_GROUPS = ("backbone", "neck", "operator", "dataset")


def unknown_choice_error(argv: list[str], conf_dir: Path = CONF_DIR) -> str | None:
    """A one-line error for `group=value` overrides naming no yaml in conf/<group>/.

    Hydra's own message spans several lines; this one names the valid options."""
    for arg in argv:
        group, sep, value = arg.partition("=")
        if not sep or group not in CHECKED_GROUPS or "(" in value:
            continue  # not a group choice, or a sweep function like choice(...)
        valid = sorted(p.stem for p in (conf_dir / group).glob("*.yaml"))
        for option in value.split(","):
            if option not in valid:
                return (
                    f"error: unknown {group} {option!r} in '{arg}'; "
                    f"valid {group} options: {', '.join(valid)}"
                )
    return None


def _absolute(path: str | None, base: Path) -> str | None:
    """Resolve a user path against the launch directory (jobs may run elsewhere)."""
    if not path:
        return path
    p = Path(path).expanduser()
    return str(p if p.is_absolute() else (base / p).resolve())


def threads_per_job(hydra_cfg: DictConfig) -> int | None:
    """Parallel joblib jobs share the cores: give each an equal share of threads."""
    launcher = hydra_cfg.launcher
    if "joblib" not in str(launcher.get("_target_", "")):
        return None
    cores = os.cpu_count() or 1
    jobs = int(launcher.get("n_jobs") or 1)
    jobs = cores if jobs < 0 else jobs
    return max(1, cores // max(jobs, 1))


@hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name="config")
def main(cfg: DictConfig) -> float | None:
    hydra_cfg = HydraConfig.get()
    launch_dir = Path(hydra_cfg.runtime.cwd)
    with open_dict(cfg):
        cfg.dataset.root = _absolute(cfg.dataset.root, launch_dir)
        cfg.model.weights = _absolute(cfg.model.weights, launch_dir)
        if not cfg.mlflow.tracking_uri:
            cfg.mlflow.tracking_uri = default_tracking_uri(launch_dir)
        if cfg.train.threads is None:
            cfg.train.threads = threads_per_job(hydra_cfg)
    if hydra_cfg.mode != RunMode.MULTIRUN:
        return pipeline.run(cfg, output_dir=Path(hydra_cfg.runtime.output_dir)).metrics.get("map50_95")
    return run_cell(cfg, hydra_cfg)


def run_cell(cfg: DictConfig, hydra_cfg: DictConfig) -> float | None:
    """One cell of a multirun: its failure is recorded, never raised, so the sweep goes on."""
    job_dir = Path(hydra_cfg.runtime.output_dir)
    cell = f"{pipeline.run_name(pipeline.group_choices(cfg), cfg.seed)} #{hydra_cfg.job.num}"
    started = time.perf_counter()
    try:
        result = pipeline.run(cfg, output_dir=job_dir, sweep_id=str(hydra_cfg.sweep.dir))
    except Exception as exc:
        log.exception("cell %s failed", cell)
        CellResult(cell, "failed", None, time.perf_counter() - started,
                   error=f"{type(exc).__name__}: {exc}").write(job_dir)
        return None
    score = result.metrics.get("map50_95")
    CellResult(cell, result.status, score, time.perf_counter() - started, result.run_id).write(job_dir)
    return score


def cli() -> None:
    error = unknown_choice_error(sys.argv[1:])
    if error:
        print(error, file=sys.stderr)
        raise SystemExit(2)
    main()
    if sweep.last_sweep_failures:
        raise SystemExit(1)


if __name__ == "__main__":
    cli()
