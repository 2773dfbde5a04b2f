"""`python -m lightyolo.report [key=value ...]`: the ablation report of one MLflow experiment.

Reads the runs back from the tracking store alone (design.md: the report never retrains),
writes `<out>/<experiment>/ablation.md`, `ablation.csv` (one row per variant), `runs.csv`
(one row per run) and the tradeoff PNGs, and logs them as artifacts of a run named `report`
(tag kind=report) in the same experiment. When the experiment holds a sweep, the report run
is nested under the newest sweep's parent run, and the files are logged on that parent run
too (`report/`), beside its summary table.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path

import pandas as pd

from lightyolo import tracking
from lightyolo.cli import key_value_command
from lightyolo.report.aggregate import (
    Baseline,
    add_comparisons,
    add_deltas,
    add_pareto_flags,
    add_speedups,
    aggregate_variants,
    included_runs,
)
from lightyolo.report.collect import REPORT_KIND, ReportError, UsageError, newest_experiment, read_runs
from lightyolo.report.deployment import write_deployment
from lightyolo.report.plots import tradeoff_plots
from lightyolo.report.tables import report_markdown
from lightyolo.settings import tracking_uri

USAGE = """usage: python -m lightyolo.report [key=value ...]

keys:
  experiment=NAME     MLflow experiment to report (default: the newest in the store)
  tracking_uri=URI    MLflow store (default: sqlite:///<cwd>/mlflow.db)
  baseline=B/N/O      backbone/neck/operator the deltas compare with (default: c3/pan/conv)
  out=DIR             output root; files go to DIR/<experiment>/ (default: reports)
"""


@dataclass(frozen=True)
class ReportOptions:
    """What one report reads and where it writes; None means the default described in USAGE."""

    experiment: str | None = None
    tracking_uri: str | None = None
    baseline: str = "c3/pan/conv"
    out: str = "reports"


@dataclass(frozen=True)
class ReportFiles:
    """The files a report wrote."""

    experiment: str
    directory: Path
    markdown: Path
    variants_csv: Path
    runs_csv: Path
    plots: list[Path] = field(default_factory=list)
    tables: list[Path] = field(default_factory=list)  # wide tables of their own sections (CSV)

    def all(self) -> list[Path]:
        return [self.markdown, self.variants_csv, self.runs_csv, *self.tables, *self.plots]


def parse_options(argv: Sequence[str]) -> ReportOptions:
    """key=value arguments → ReportOptions; UsageError naming the bad argument otherwise."""
    valid = ", ".join(f.name for f in fields(ReportOptions))
    values: dict[str, str] = {}
    for argument in argv:
        key, sep, value = argument.partition("=")
        if not sep:
            raise UsageError(f"argument {argument!r}: expected key=value (valid keys: {valid})")
        if key not in valid.split(", "):
            raise UsageError(f"unknown key {key!r} (valid keys: {valid})")
        if not value:
            raise UsageError(f"{key}= is empty: give a value")
        values[key] = value
    return ReportOptions(**values)


def write_report(options: ReportOptions, *, cwd: Path | None = None) -> ReportFiles:
    """Builds and writes the report described by `options`; ReportError when there is
    nothing to report (no store, unknown experiment, no completed run)."""
    cwd = Path.cwd() if cwd is None else cwd
    try:
        baseline = Baseline.parse(options.baseline)
    except ValueError as err:
        raise UsageError(str(err)) from err
    uri = tracking_uri(options.tracking_uri, cwd)
    experiment = options.experiment or newest_experiment(uri)
    runs = read_runs(uri, experiment)
    if not (runs["status"] == "completed").any():
        raise ReportError(
            f"experiment {experiment!r} at {uri} has no completed runs "
            f"({len(runs)} runs read); nothing to report"
        )
    variants = add_comparisons(add_deltas(aggregate_variants(runs), baseline), runs, baseline)
    variants = add_pareto_flags(add_speedups(variants, runs, baseline), runs)

    out_root = Path(options.out) if Path(options.out).is_absolute() else cwd / options.out
    directory = out_root / re.sub(r"[^A-Za-z0-9._-]", "_", experiment)
    directory.mkdir(parents=True, exist_ok=True)
    plots = tradeoff_plots(variants, directory)
    deployment, deployment_tables = write_deployment(
        runs, variants, tracking.runs_frame(uri, experiment), str(baseline), directory
    )
    files = ReportFiles(
        experiment=experiment,
        directory=directory,
        markdown=directory / "ablation.md",
        variants_csv=directory / "ablation.csv",
        runs_csv=directory / "runs.csv",
        plots=plots,
        tables=deployment_tables,
    )
    variants.to_csv(files.variants_csv, index=False)  # `recipe` links rows to runs.csv
    runs_with_use(runs).to_csv(files.runs_csv, index=False)
    files.markdown.write_text(
        report_markdown(
            runs, variants, plots, experiment=experiment, tracking_uri=uri, baseline=baseline,
            out_dir=directory, deployment=deployment or None,
        ),
        encoding="utf-8",
    )
    _log_report_run(uri, experiment, baseline, files)
    return files


def runs_with_use(runs: pd.DataFrame) -> pd.DataFrame:
    """runs plus `included`: whether the run entered its variant's means."""
    out = runs.drop(columns=["recipe_items", "requested_cells"])
    out["included"] = out["run_id"].isin(included_runs(runs)["run_id"])
    return out


def _log_report_run(uri: str, experiment: str, baseline: Baseline, files: ReportFiles) -> None:
    """The report as a run of its own (under the newest sweep, when there is one), and its
    files on that sweep's parent run as well."""
    sweep_run_id = tracking.newest_sweep_run_id(uri, experiment)
    tracker = tracking.RunTracker.start(
        uri, experiment, run_name="report", tags={tracking.KIND_TAG: REPORT_KIND},
        params={"baseline": str(baseline)}, parent_run_id=sweep_run_id,
    )
    targets = [tracker] + ([tracking.RunTracker(uri, sweep_run_id)] if sweep_run_id else [])
    for target in targets:
        for path in files.all():
            target.log_artifact(path, "report")
    tracker.finish("completed")


def print_report(argv: list[str]) -> None:
    files = write_report(parse_options(argv))
    print(f"report of experiment {files.experiment!r} written to {files.directory}:")
    for path in files.all():
        print(f"  {path}")


def main(argv: Sequence[str] | None = None) -> int:
    """The CLI: prints where the report went, or one line saying why there is none."""
    return key_value_command(
        "lightyolo.report", USAGE, argv, print_report, ReportError,
        exit_code=lambda err: 2 if isinstance(err, UsageError) else 1,
    )
