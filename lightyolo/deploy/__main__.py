"""`lightyolo deploy experiment=NAME [key=value ...]` (conf/deploy.yaml): mAP of an experiment's cells through each
deployment runtime and precision (see `lightyolo/deploy/experiment.py` for what is logged)."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

from omegaconf import DictConfig

from lightyolo import command
from lightyolo.deploy.experiment import DeployError, DeployResult, DeploySettings, deploy_runs
from lightyolo.settings import tracking_uri


def deploy_options(cfg: DictConfig) -> tuple[str, str | None, tuple[str, ...], DeploySettings]:
    """The composed `conf/deploy.yaml` → (experiment, tracking_uri, run_ids, settings)."""
    command.required(cfg, "experiment", "deploy: experiment=NAME is required")
    settings = DeploySettings(
        runtimes=command.names(cfg, "runtimes"), precisions=command.names(cfg, "precisions"),
        threads=command.integer(cfg, "threads", 1), calibration_images=command.integer(cfg, "calibration_images", 1),
        seed=command.integer(cfg, "seed"),
    )
    return command.text(cfg, "experiment"), command.text(cfg, "tracking_uri"), command.names(cfg, "run_ids"), settings


def format_results(results: list[DeployResult]) -> str:
    lines = ["| run | runtime_precision | mAP50-95 | mAP50 | how |", "|---|---|---|---|---|"]
    for r in results:
        if r.map50_95 is None:
            lines.append(f"| {r.run_name} | {r.key} | unsupported | — | {r.how['reason']} |")
        else:
            lines.append(f"| {r.run_name} | {r.key} | {r.map50_95:.4f} | {r.map50:.4f} | {r.how['split']}, {r.how['images']} images |")
    return "\n".join(lines)


def deploy(cfg: DictConfig) -> None:
    experiment, uri, run_ids, settings = deploy_options(cfg)
    results = deploy_runs(tracking_uri(uri, Path.cwd()), experiment, settings, run_ids,
                          log=lambda message: print(message, file=sys.stderr))
    print(format_results(results))


def main(argv: Sequence[str] | None = None) -> int:
    """`lightyolo deploy experiment=NAME [key=value ...]` (conf/deploy.yaml)."""
    return command.run("deploy", argv, deploy, label="lightyolo.deploy", errors=(DeployError,))


if __name__ == "__main__":
    sys.exit(main())
