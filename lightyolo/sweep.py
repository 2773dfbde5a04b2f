"""Sweeps that survive: progress, per-cell results and the end-of-sweep summary.

Hydra's launchers run the cells (basic: one after another; joblib: in parallel on this
machine; submitit: on SLURM, or `submitit_local` here). Each cell writes
`<sweep dir>/<job>/cell_result.json` whatever happens to it; `SweepCallback` — configured in
`conf/config.yaml` under `hydra.callbacks` — prepares the MLflow experiment before any job
starts, and at the end reads those files back, prints the summary table and records whether
any cell failed (`cell_result.record_sweep_failures`), so that `python -m lightyolo.run -m …`
exits non-zero.

`python -m lightyolo.sweep NAME [overrides]` is short for
`python -m lightyolo.run -m -cd <sweeps dir> -cn NAME [overrides]`, the sweeps dir being the
built-in one or a LIGHTYOLO_CONFIG_PATH directory's `sweeps/` (lightyolo.configs.sweep_file).
"""

from __future__ import annotations

import logging
import math
import os
import sys
import time
from pathlib import Path
from typing import Any

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from lightyolo.cell_result import CellResult, read_results, record_sweep_failures
from lightyolo.configs import ConfigPathError, sweep_dirs, sweep_file, sweep_names
from lightyolo.settings import tracking_uri
from lightyolo.tracking import ensure_experiment

log = logging.getLogger(__name__)

# Set by the launching process for its jobs (inherited by joblib/submitit workers).
ENV_CELLS = "LIGHTYOLO_SWEEP_CELLS"
ENV_START = "LIGHTYOLO_SWEEP_START"


def count_cells(task_overrides: list[str], sweeper_params: dict[str, Any] | None) -> int:
    """How many jobs the basic sweeper makes: the product of every swept key's values
    (command-line overrides replace the sweep file's `hydra.sweeper.params` of the same key)."""
    params = {str(k): str(v) for k, v in (sweeper_params or {}).items()}
    for override in task_overrides:
        key = override.split("=", 1)[0]
        params[key] = override.split("=", 1)[1] if "=" in override else ""
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
    lines = [f"{'cell':<{width}} {'status':<10} {'mAP50-95':>9} {'time':>8}"]
    for r in results:
        score = f"{r.map50_95:.4f}" if r.map50_95 is not None else "-"
        lines.append(f"{r.cell:<{width}} {r.status:<10} {score:>9} {_duration(r.seconds):>8}")
        if r.error:
            lines.append(f"    error: {r.error.splitlines()[0][:200]}")
    missing = expected - len(results)
    if missing > 0:
        lines.append(f"{missing} cell(s) left no result (the job died before reporting)")
    return "\n".join(lines)


class SweepCallback(Callback):
    """Hydra callback: experiment creation, progress and the summary of a multirun."""

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        cells = count_cells(
            list(config.hydra.overrides.task), config.hydra.sweeper.get("params")
        )
        os.environ[ENV_CELLS] = str(cells)
        os.environ[ENV_START] = str(time.time())
        # Created once here, before parallel jobs could race to create it.
        uri = tracking_uri(config.mlflow.tracking_uri, config.hydra.runtime.cwd)
        ensure_experiment(uri, config.experiment)
        log.info("sweep of %d cells into %s, MLflow experiment %r", cells, config.hydra.sweep.dir, config.experiment)

    def on_job_start(self, config: DictConfig, **kwargs: Any) -> None:
        if ENV_CELLS not in os.environ or "sweep" not in config.hydra:
            return
        log.info(
            "%s",
            progress_line(
                int(config.hydra.job.num), int(os.environ[ENV_CELLS]),
                float(os.environ[ENV_START]), time.time(),
            ),
        )

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        expected = int(os.environ.get(ENV_CELLS, "0"))
        results = read_results(Path(config.hydra.sweep.dir))
        failed = sum(r.status == "failed" for r in results) + max(expected - len(results), 0)
        record_sweep_failures(failed)
        print(f"\nsweep {config.hydra.sweep.dir}: {len(results) - failed}/{expected} cells ok")
        print(summary_table(results, expected), flush=True)


def main() -> None:
    """`python -m lightyolo.sweep NAME [overrides]`."""
    from lightyolo.run import cli  # the one CLI; run.py never imports this module

    try:
        names = ", ".join(sweep_names())
    except ConfigPathError as error:  # a LIGHTYOLO_CONFIG_PATH entry that is no directory
        print(f"error: {error}", file=sys.stderr)
        raise SystemExit(2) from None
    if len(sys.argv) < 2 or sys.argv[1].startswith("-"):
        print(f"usage: python -m lightyolo.sweep NAME [key=value ...]; sweeps: {names}", file=sys.stderr)
        raise SystemExit(2)
    name, overrides = sys.argv[1], sys.argv[2:]
    path = sweep_file(name)
    if path is None:
        where = ", ".join(str(d) for d in sweep_dirs())
        print(f"error: no sweep {name!r} in {where}; sweeps: {names}", file=sys.stderr)
        raise SystemExit(2)
    sys.argv = [sys.argv[0], "-m", "-cd", str(path.parent), "-cn", name, *overrides]
    cli()


if __name__ == "__main__":
    main()
