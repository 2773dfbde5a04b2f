"""`python -m lightyolo.bench [key=value ...]`: the interleaved bench stage of an experiment.

See `lightyolo/bench/experiment.py` for what is measured and recorded, `stage.py` for the
protocol and statistics, `runtimes.py` for the runtimes.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from dataclasses import fields
from pathlib import Path

from lightyolo.cli import key_value_command, name_list
from lightyolo.bench.experiment import BenchError, BenchSettings, BenchResult, bench_runs
from lightyolo.export import ExportError, as_int, parse_key_values
from lightyolo.settings import tracking_uri

USAGE = """usage: python -m lightyolo.bench experiment=NAME [key=value ...]

keys:
  experiment=NAME     MLflow experiment whose completed cells are measured (required)
  tracking_uri=URI    MLflow store (default: sqlite:///<cwd>/mlflow.db)
  run_ids=ID,ID       only these completed runs (default: every completed cell)
  runtimes=[A,B]      torch, onnxruntime, openvino, ncnn, onnxruntime_trt (cuda), any
                      plugin's (docs/deployment.md); torch_fp16 = torch at fp16 on cuda
                      (default: torch,onnxruntime)
  precisions=[P,Q]    fp32, fp16, int8; a pair a runtime cannot run is logged as
                      unsupported (default: fp32)
  calibration_images=N  int8: images drawn from each cell's training split (default: 300)
  device=D            cpu or cuda (default: cpu)
  threads=N           intra-op threads of torch and ONNX Runtime, inter-op 1 (default: 1)
  img=N               input H = W (default: each run's train.img_size)
  batch=N             images per pass (default: 1)
  rounds=R            interleaved rounds (default: 30)
  warmup=N            untimed passes per visit (default: 5)
  iters=N             timed passes per visit (default: 20)
  seed=N              seed of the visiting order and the bootstrap (default: 0)
  clock=C             auto (default: cpu at device=cpu and threads=1, else wall), wall
                      (elapsed) or cpu (process CPU time; threads=1 and device=cpu only; its
                      methods are named with a _cputime suffix)
"""

KEYS = ("experiment", "tracking_uri", "run_ids", *(f.name for f in fields(BenchSettings)))
INT_KEYS = ("threads", "img", "batch", "rounds", "warmup", "iters", "seed", "calibration_images")


def parse_options(argv: Sequence[str]) -> tuple[str, str | None, tuple[str, ...], BenchSettings]:
    """key=value arguments → (experiment, tracking_uri, run_ids, settings); BenchError if bad."""
    try:
        values = parse_key_values(argv, KEYS, "bench")
        numbers = {key: as_int(key, values.pop(key)) for key in INT_KEYS if key in values}
    except ExportError as err:
        raise BenchError(str(err)) from None
    experiment = values.pop("experiment", None)
    if experiment is None:
        raise BenchError("bench: experiment=NAME is required")
    uri = values.pop("tracking_uri", None)
    run_ids = tuple(i for i in values.pop("run_ids", "").split(",") if i)
    for key in ("runtimes", "precisions"):
        if key in values:
            values[key] = name_list(values[key])
    for key in ("threads", "batch", "rounds", "iters", "calibration_images"):
        if key in numbers and numbers[key] < (2 if key == "rounds" else 1):
            raise BenchError(f"{key}={numbers[key]}: expected >= {2 if key == 'rounds' else 1}")
    return experiment, uri, run_ids, BenchSettings(**values, **numbers)


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


def bench(argv: list[str]) -> None:
    """Parse, measure, print the table (progress goes to stderr)."""
    experiment, uri, run_ids, settings = parse_options(argv)
    results = bench_runs(
        tracking_uri(uri, Path.cwd()), experiment, settings, run_ids,
        log=lambda message: print(message, file=sys.stderr),
    )
    print(format_results(results))


def main(argv: Sequence[str] | None = None) -> int:
    return key_value_command("lightyolo.bench", USAGE, argv, bench, BenchError)


if __name__ == "__main__":
    sys.exit(main())
