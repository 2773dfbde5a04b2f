"""`lightyolo bench experiment=NAME [key=value ...]` (conf/bench.yaml): the interleaved bench
stage of an experiment.

See `lightyolo/bench/experiment.py` for what is measured and recorded, `stage.py` for the
protocol and statistics, `runtimes.py` for the runtimes.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

from omegaconf import DictConfig

from lightyolo import command
from lightyolo.bench.experiment import BenchError, BenchSettings, BenchResult, bench_runs
from lightyolo.settings import tracking_uri


def bench_options(cfg: DictConfig) -> tuple[str, str | None, tuple[str, ...], BenchSettings]:
    """The composed `conf/bench.yaml` → (experiment, tracking_uri, run_ids, settings)."""
    command.required(cfg, "experiment", "bench: experiment=NAME is required")
    numbers = {key: command.integer(cfg, key, low) for key, low in (
        ("threads", 1), ("img", None), ("batch", 1), ("rounds", 2), ("warmup", None), ("iters", 1),
        ("seed", None), ("calibration_images", 1))}
    settings = BenchSettings(
        runtimes=command.names(cfg, "runtimes"), precisions=command.names(cfg, "precisions"),
        device=command.text(cfg, "device"), clock=command.text(cfg, "clock"), **numbers,
    )
    return command.text(cfg, "experiment"), command.text(cfg, "tracking_uri"), command.names(cfg, "run_ids"), settings


def format_results(results: list[BenchResult]) -> str:
    """A markdown table: cell, method, median [95 % CI], p90, CI half-width %."""
    lines = ["| run | method | median ms [95% CI] | p90 ms | ± % |", "|---|---|---|---|---|"]
    for r in results:
        s = r.summary
        lines.append(
            f"| {r.run_name} | {r.method} | {s.median_ms:.2f} [{s.ci_low_ms:.2f}, {s.ci_high_ms:.2f}] "
            f"| {s.p90_ms:.2f} | {s.half_width_pct:.1f} |"
        )
    return "\n".join(lines)


def bench(cfg: DictConfig) -> None:
    """Measure, print the table (progress goes to stderr)."""
    experiment, uri, run_ids, settings = bench_options(cfg)
    results = bench_runs(
        tracking_uri(uri, Path.cwd()), experiment, settings, run_ids,
        log=lambda message: print(message, file=sys.stderr),
    )
    print(format_results(results))


def main(argv: Sequence[str] | None = None) -> int:
    """`lightyolo bench experiment=NAME [key=value ...]` (conf/bench.yaml)."""
    return command.run("bench", argv, bench, label="lightyolo.bench", errors=(BenchError,))


if __name__ == "__main__":
    sys.exit(main())
