"""`lightyolo report [key=value ...]` (conf/report.yaml): the ablation report of one MLflow experiment.

Reads the runs back from the tracking store alone (docs/design.md: the report never retrains),
writes `<out>/<experiment>/ablation.md`, `ablation.csv` (one row per variant), `runs.csv`
(one row per run) and the tradeoff PNGs, and logs them as artifacts of a report run (tag
kind=report) in the same experiment. When every reported run comes from one sweep, the report
run is named after that sweep and nested under its parent run, whose artifacts get the files
too (`report/`, beside its summary table); otherwise it is `report-<experiment>`, at the top.
A report run replaces the earlier one of the same name: one per sweep or experiment.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field, fields, replace
from pathlib import Path

import pandas as pd
from omegaconf import DictConfig

from lightyolo import command
from lightyolo.report.aggregate import (
    Baseline,
    add_comparisons,
    add_deltas,
    add_pareto_flags,
    add_speedups,
    aggregate_variants,
    included_runs,
)
from lightyolo.report.collect import ReportError, UsageError, newest_experiment, read_runs, read_runs_csv
from lightyolo.report.sequential import SequentialDesign
from lightyolo.report.deployment import write_deployment
from lightyolo.report.plots import tradeoff_plots
from lightyolo.report.tables import report_markdown
from lightyolo.settings import tracking_uri
from lightyolo.store import schema
from lightyolo.store.client import Store
from lightyolo.store.queries import runs_named, sweep_parent_run
from lightyolo.store.runs import RunTracker


@dataclass(frozen=True)
class ReportOptions:
    """What one report reads and where it writes (conf/report.yaml; None: the default `--help` describes)."""

    experiment: str | None = None
    tracking_uri: str | None = None
    baseline: str = "c3/pan/conv"
    out: str = "reports"
    runs_csv: str | None = None
    margin: str = "2"
    seeds: str = "fixed"
    seeds_first: str = "3"
    seeds_cap: str = "8"


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


def report_options(cfg: DictConfig) -> ReportOptions:
    """The composed `conf/report.yaml` → ReportOptions (values as text: write_report reads them)."""
    return ReportOptions(**{f.name: command.text(cfg, f.name) for f in fields(ReportOptions)})


def parse_options(argv: Sequence[str]) -> ReportOptions:
    """key=value arguments → ReportOptions, composed as `lightyolo report` composes them;
    UsageError naming the bad argument."""
    try:
        return report_options(command.compose("report", argv))
    except command.UsageError as err:
        raise UsageError(str(err)) from None


def write_report(options: ReportOptions, *, cwd: Path | None = None) -> ReportFiles:
    """Builds and writes the report described by `options`; ReportError when there is
    nothing to report (no store, unknown experiment, no completed run)."""
    cwd = Path.cwd() if cwd is None else cwd
    try:
        baseline = Baseline.parse(options.baseline)
    except ValueError as err:
        raise UsageError(str(err)) from err
    margin, design = _statistics_options(options)
    if options.runs_csv:
        csv = Path(options.runs_csv) if Path(options.runs_csv).is_absolute() else cwd / options.runs_csv
        uri = f"runs.csv {options.runs_csv}"
        experiment = options.experiment or csv.parent.name
        runs = read_runs_csv(csv)
    else:
        uri = tracking_uri(options.tracking_uri, cwd)
        experiment = options.experiment or newest_experiment(uri)
        runs = read_runs(uri, experiment)
    if not (runs["status"] == "completed").any():
        raise ReportError(
            f"experiment {experiment!r} at {uri} has no completed runs "
            f"({len(runs)} runs read); nothing to report"
        )
    if design is not None:
        completed = int((aggregate_variants(runs)["status"] == "completed").sum())
        design = replace(design, family=max(1, completed - 1))
    variants = add_deltas(aggregate_variants(runs), baseline)
    variants = add_comparisons(variants, runs, baseline, margin, design)
    variants = add_pareto_flags(add_speedups(variants, runs, baseline), runs)

    out_root = Path(options.out) if Path(options.out).is_absolute() else cwd / options.out
    directory = out_root / re.sub(r"[^A-Za-z0-9._-]", "_", experiment)
    directory.mkdir(parents=True, exist_ok=True)
    plots = tradeoff_plots(variants, directory)
    # runs.csv keeps no deployment figures: a report rebuilt from it has no deployment section
    raw = pd.DataFrame() if options.runs_csv else Store(uri).runs_frame(experiment)
    deployment, deployment_tables = write_deployment(runs, variants, raw, str(baseline), directory)
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
            out_dir=directory, margin=margin, design=design, deployment=deployment or None,
        ),
        encoding="utf-8",
    )
    if not options.runs_csv:
        _log_report_run(uri, experiment, baseline, files, set(runs["sweep_id"].dropna()))
    return files


def _statistics_options(options: ReportOptions) -> tuple[float, SequentialDesign | None]:
    """margin= and seeds=… as numbers and a sequential design; UsageError naming the key."""
    try:
        margin = float(options.margin)
        if margin <= 0:
            raise ValueError
    except ValueError:
        raise UsageError(f"margin={options.margin}: expected a positive number of points") from None
    if options.seeds == "fixed":
        return margin, None
    if options.seeds != "adaptive":
        raise UsageError(f"seeds={options.seeds}: expected fixed or adaptive")
    try:
        design = SequentialDesign(int(options.seeds_first), int(options.seeds_cap), margin)
    except ValueError as err:
        raise UsageError(f"seeds_first={options.seeds_first}, seeds_cap={options.seeds_cap}: {err}") from None
    return margin, design


def runs_with_use(runs: pd.DataFrame) -> pd.DataFrame:
    """runs plus `included`: whether the run entered its variant's means."""
    out = runs.drop(columns=["recipe_items", "requested_cells"])
    out["included"] = out["run_id"].isin(included_runs(runs)["run_id"])
    return out


def _log_report_run(uri: str, experiment: str, baseline: Baseline, files: ReportFiles, sweeps: set[str]) -> None:
    """The report as a run of its own, replacing the earlier one of its name: under the sweep
    its runs came from (and its files on that sweep's parent run too), else at the top."""
    store = Store(uri)
    parent = sweep_parent_run(store, experiment, next(iter(sweeps))) if len(sweeps) == 1 else None
    sweep_run_id, name = (parent[0], f"report-{parent[1]}") if parent else (None, f"report-{experiment}")
    for earlier in runs_named(store, experiment, name, schema.REPORT_KIND):
        RunTracker(store, earlier).discard()
    tracker = RunTracker.start(
        store, experiment, run_name=name, tags={schema.KIND_TAG: schema.REPORT_KIND},
        params={"baseline": str(baseline)}, parent_run_id=sweep_run_id,
    )
    targets = [tracker] + ([RunTracker(store, sweep_run_id)] if sweep_run_id else [])
    for target in targets:
        for path in files.all():
            target.log_artifact(path, schema.REPORT_ARTIFACT_DIR)
    tracker.finish(schema.COMPLETED)


def print_report(cfg: DictConfig) -> None:
    files = write_report(report_options(cfg))
    print(f"report of experiment {files.experiment!r} written to {files.directory}:")
    for path in files.all():
        print(f"  {path}")


def main(argv: Sequence[str] | None = None) -> int:
    """The CLI: prints where the report went, or one line saying why there is none."""
    return command.run(
        "report", argv, print_report, label="lightyolo.report", errors=(ReportError,),
        exit_code=lambda err: 2 if isinstance(err, UsageError) else 1,
    )
