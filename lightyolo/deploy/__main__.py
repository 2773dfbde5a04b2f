"""`python -m lightyolo.deploy [key=value ...]`: mAP of an experiment's cells through each
deployment runtime and precision (see `lightyolo/deploy/experiment.py` for what is logged)."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

from lightyolo.cli import key_value_command, name_list
from lightyolo.deploy.calibration import DEFAULT_IMAGES
from lightyolo.deploy.experiment import DEFAULT_RUNTIMES, DeployError, DeployResult, DeploySettings, deploy_runs
from lightyolo.deploy.registry import runtime_names
from lightyolo.export import ExportError, as_int, parse_key_values
from lightyolo.settings import tracking_uri

USAGE = f"""usage: python -m lightyolo.deploy experiment=NAME [key=value ...]

keys:
  experiment=NAME        MLflow experiment whose completed cells are deployed (required)
  tracking_uri=URI       MLflow store (default: sqlite:///<cwd>/mlflow.db)
  run_ids=ID,ID          only these completed runs (default: every completed cell)
  runtimes=[A,B]         of {', '.join(runtime_names())} (default: {','.join(DEFAULT_RUNTIMES)})
  precisions=[P,Q]       fp32, fp16, int8 (default: fp32,int8)
  threads=N              runtime threads (default: 1)
  calibration_images=N   INT8 calibration images drawn from the training split (default: {DEFAULT_IMAGES})
  seed=N                 seed of the calibration draw (default: 0)

Logs deploy/<runtime>_<precision>/map50_95 and /map50 on each cell's run, with a tag
deploy/<runtime>_<precision> saying how; docs/deployment.md.
"""

KEYS = ("experiment", "tracking_uri", "run_ids", "runtimes", "precisions", "threads", "calibration_images", "seed")


def parse_options(argv: Sequence[str]) -> tuple[str, str | None, tuple[str, ...], DeploySettings]:
    try:
        values = parse_key_values(argv, KEYS, "deploy")
        numbers = {key: as_int(key, values.pop(key)) for key in ("threads", "calibration_images", "seed") if key in values}
    except ExportError as err:
        raise DeployError(str(err)) from None
    experiment = values.pop("experiment", None)
    if experiment is None:
        raise DeployError("deploy: experiment=NAME is required")
    for key in ("threads", "calibration_images"):
        if key in numbers and numbers[key] < 1:
            raise DeployError(f"{key}={numbers[key]}: expected >= 1")
    lists = {key: name_list(values.pop(key)) for key in ("runtimes", "precisions") if key in values}
    return experiment, values.pop("tracking_uri", None), name_list(values.pop("run_ids", "")), \
        DeploySettings(**lists, **numbers)


def format_results(results: list[DeployResult]) -> str:
    lines = ["| run | runtime_precision | mAP50-95 | mAP50 | how |", "|---|---|---|---|---|"]
    for r in results:
        if r.map50_95 is None:
            lines.append(f"| {r.run_name} | {r.key} | unsupported | — | {r.how['reason']} |")
        else:
            lines.append(f"| {r.run_name} | {r.key} | {r.map50_95:.4f} | {r.map50:.4f} | {r.how['split']}, {r.how['images']} images |")
    return "\n".join(lines)


def deploy(argv: list[str]) -> None:
    experiment, uri, run_ids, settings = parse_options(argv)
    results = deploy_runs(tracking_uri(uri, Path.cwd()), experiment, settings, run_ids,
                          log=lambda message: print(message, file=sys.stderr))
    print(format_results(results))


def main(argv: Sequence[str] | None = None) -> int:
    return key_value_command("lightyolo.deploy", USAGE, argv, deploy, DeployError)


if __name__ == "__main__":
    sys.exit(main())
