"""The bench stage over an experiment: completed cells from MLflow → interleaved timings → records.

What is timed: every (cell, runtime, precision) — the runtimes from the registry
(`lightyolo/deploy/registry.py`: torch, onnxruntime, openvino, ncnn, and plugins), the
precisions fp32 (default), fp16, int8 (calibrated on `calibration_images` of the cell's own
training split). A pair a runtime cannot take (an op ncnn lacks, int8 in eager PyTorch) is
an "unsupported" cell: logged, recorded in its method tag with the reason, never a crash.

Every completed cell run of the experiment (tag status=completed; the report's run is not a
cell) is loaded in this one process: its `config.yaml` and `weights/best.pt` artifacts
rebuild the detector, which is deployed as `lightyolo.export` deploys it (eval, BatchNorm
fused, float32, contiguous NCHW memory format for every cell and runtime, channels_last for
none). For `onnxruntime` each cell is exported to ONNX once (and logged on its run as
`export/model.onnx` when the run has none yet and the bench runs at the run's own image
size and batch 1, i.e. the file `lightyolo.export` would have written). Then all (cell,
runtime) pairs are timed interleaved (`stage.py`) and each cell's figures are written on
its own run:

- metrics `bench/<method>/median_ms`, `/p90_ms`, `/ci_low_ms`, `/ci_high_ms`, where
  method = `<runtime>[_<precision>]_<device>_t<threads>_b<batch>_<img>`, e.g.
  `onnxruntime_cpu_t1_b1_320` (fp32 names no precision), `openvino_int8_cpu_t1_b1_320`
  (with `_cputime` appended when timed by CPU time, `clock=cpu`);
  running again logs new values of the same keys (MLflow's latest value is the figure);
- tag `bench/<method>`: JSON describing the method in full (`method_description`, plus the
  runtime session's details: an INT8 model's quantization method and calibration set), or,
  for an unsupported pair, the same with `"status": "unsupported"` and the reason;
- artifact `bench/<method>.json`: {"round_medians_ms": [...]} in round order. Rounds are
  shared by all cells of one bench run (same seed, same rounds), so a speed-up between two
  cells is the per-round ratio of these lists, bootstrapped over rounds (`stage.round_ratio`).
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch
from omegaconf import OmegaConf
from torch import nn

from lightyolo.bench.runtimes import (
    Deployment, Pass, RuntimeUnavailable, build_deployments, configure_threads, device_name,
)
from lightyolo.deploy.calibration import DEFAULT_IMAGES, read_dataset_spec, training_calibration
from lightyolo.deploy.runtime import Calibration, Exported, Unsupported
from lightyolo.bench.stage import CI_METHOD, Summary, interleaved_timings, summarise
from lightyolo.export import ExportError, fuse_batchnorm, load_run
from lightyolo.store import schema
from lightyolo.store.client import Store
from lightyolo.store.schema import ONNX_ARTIFACT
from lightyolo.store.queries import CompletedRun, runs_to_measure
from lightyolo.store.runs import RunTracker

MEMORY_FORMAT = "contiguous NCHW"
DTYPES = {"fp32": "float32", "fp16": "float16", "int8": "int8 (post-training quantized)"}
STATISTICS = f"median_ms: median of per-round medians; p90_ms: 90th percentile of all timed passes; {CI_METHOD}"


class BenchError(Exception):
    """A condition the bench stage explains in one line (exit status 2)."""


@dataclass(frozen=True)
class BenchSettings:
    """How the cells are measured (the method), independent of which cells."""

    runtimes: tuple[str, ...] = ("torch", "onnxruntime")
    precisions: tuple[str, ...] = ("fp32",)
    calibration_images: int = DEFAULT_IMAGES  # int8: drawn from each cell's training split
    device: str = "cpu"
    threads: int = 1
    batch: int = 1
    img: int | None = None  # None: each run's own train.img_size
    rounds: int = 30
    warmup: int = 5
    iters: int = 20
    seed: int = 0
    # auto: cpu at device=cpu with 1 thread (the A/A check passes there on a loaded machine;
    # wall clock does not), else wall. cpu = process CPU time, device=cpu and threads=1 only.
    clock: str = "auto"

    def resolved_clock(self) -> str:
        if self.clock == "auto":
            return "cpu" if self.device == "cpu" and self.threads == 1 else "wall"
        return self.clock


@dataclass(frozen=True)
class BenchResult:
    run_id: str
    run_name: str
    method: str
    summary: Summary
    times_ms: np.ndarray  # (rounds, iters): every timed pass, for ratios between cells


def method_name(deployment: Deployment, threads: int, batch: int, img: int, clock: str = "wall") -> str:
    """`<runtime>[_<precision>]_<device>_t<threads>_b<batch>_<img>` (+ `_cputime` for clock=cpu):
    a method's metric prefix; fp32 names no precision (the keys from before precisions)."""
    suffix = "_cputime" if clock == "cpu" else ""
    return f"{deployment.key}_{deployment.runtime.device}_t{threads}_b{batch}_{img}{suffix}"


def method_description(deployment: Deployment, settings: BenchSettings, img: int, cells: int) -> dict[str, object]:
    """Everything that defines a method's figures: the `bench/<method>` tag's JSON (the
    runtime's session adds its own details, e.g. an INT8 model's quantization and calibration)."""
    runtime = deployment.runtime
    return {
        "runtime": runtime.name,
        "precision": deployment.precision,
        "runtime_version": runtime.version,
        "device": runtime.device,
        "device_name": device_name(runtime.device),
        "threads": settings.threads,
        "interop_threads": 1,
        "batch": settings.batch,
        "img": img,
        "rounds": settings.rounds,
        "warmup": settings.warmup,
        "iters": settings.iters,
        "seed": settings.seed,
        "clock": "process CPU time (time.process_time)" if settings.resolved_clock() == "cpu" else "wall (time.perf_counter)",
        "cells_interleaved": cells,
        "memory_format": MEMORY_FORMAT,
        "batchnorm": "fused (torch.nn.utils.fusion.fuse_conv_bn_eval)",
        "dtype": DTYPES[deployment.precision],
        "statistics": STATISTICS,
        "torch_version": torch.__version__,
        "onnxruntime_version": ort.__version__,
    }


@dataclass
class DeployedPasses:
    """What `deployed_passes` made: the timed passes {(label, deployment key): pass}, each
    label's ONNX file where one was exported, the session descriptions, and the pairs a runtime
    could not take {(label, key): reason}."""

    passes: dict[tuple[str, str], Pass]
    onnx_files: dict[str, Path]
    descriptions: dict[tuple[str, str], dict]
    unsupported: dict[tuple[str, str], str]


def cell_calibration(
    config, source: str, img: int, settings: BenchSettings
) -> Callable[[tuple[int, int]], Calibration]:
    """The cell's INT8 calibration set at an input shape, read from its training split when first asked."""

    def make(shape: tuple[int, int]) -> Calibration:
        try:
            spec = read_dataset_spec(config, source)
        except ValueError as err:
            raise Unsupported(f"int8: {err}") from None
        return training_calibration(spec, img, settings.calibration_images, settings.seed, shape)

    return make


def deployed_passes(
    models: Mapping[str, tuple[nn.Module, int]],
    deployments: list[Deployment],
    batch: int,
    onnx_dir: Path,
    calibrations: Mapping[str, Callable[[tuple[int, int]], Calibration]] | None = None,
) -> DeployedPasses:
    """One timed pass per (label, deployment) for models given as {label: (model, img)}.

    Each model is fused once and exported to ONNX (into `onnx_dir`) when a runtime first asks;
    every runtime loads its own copy. The input is a fixed random image (seed 0),
    batch × 3 × img × img. `calibrations[label]` makes that model's INT8 calibration set.
    """
    out = DeployedPasses({}, {}, {}, {})
    for index, (label, (model, img)) in enumerate(models.items()):
        deployed = fuse_batchnorm(model).to(memory_format=torch.contiguous_format)
        images = torch.rand(batch, 3, img, img, generator=torch.Generator().manual_seed(0)).numpy()
        exported = Exported(deployed, img, batch, onnx_dir / f"{index}", (calibrations or {}).get(label))
        for deployment in deployments:
            key = (label, deployment.key)
            try:
                session = deployment.runtime.load(exported, deployment.precision)
            except Unsupported as err:
                out.unsupported[key] = str(err)
                continue
            out.passes[key] = session.timed_pass(images)
            out.descriptions[key] = session.description
        if exported.has_onnx:
            out.onnx_files[label] = exported.onnx
    return out


def bench_runs(
    tracking_uri: str,
    experiment: str,
    settings: BenchSettings,
    run_ids: tuple[str, ...] = (),
    *,
    log=print,
) -> list[BenchResult]:
    """Bench the completed cells of `experiment` (or only `run_ids`) and record the figures."""
    store = Store(tracking_uri)
    runs = runs_to_bench(store, experiment, run_ids)
    check_clock(settings)
    clock = settings.resolved_clock()
    try:
        deployments = build_deployments(settings.runtimes, settings.precisions, settings.device, settings.threads)
        configure_threads(settings.threads)
    except (RuntimeUnavailable, ValueError) as err:
        raise BenchError(str(err)) from None

    run_names = {run.run_id: run.run_name for run in runs}
    with tempfile.TemporaryDirectory(prefix="lightyolo-bench-") as tmp:
        cells = load_cells(store, experiment, runs, settings, Path(tmp))
        log(f"bench: {len(runs)} cells × {', '.join(d.key for d in deployments)} on {settings.device}, {clock} clock, "
            f"{settings.threads} thread(s), batch {settings.batch}: {settings.rounds} rounds of "
            f"{settings.warmup} warm-up + {settings.iters} timed passes")
        models = {run_id: (cell.model, cell.img) for run_id, cell in cells.items()}
        calibrations = {run_id: cell.calibration for run_id, cell in cells.items()}
        deployed = deployed_passes(models, deployments, settings.batch, Path(tmp) / "onnx", calibrations)
        for (run_id, key), reason in deployed.unsupported.items():
            log(f"bench: {run_names[run_id]} × {key}: unsupported ({reason})")
        for run_id, onnx_file in deployed.onnx_files.items():
            exportable = cells[run_id].img == cells[run_id].own_img and settings.batch == 1
            if exportable and not store.has_artifact(run_id, ONNX_ARTIFACT):
                store.log_exported_model(run_id, onnx_file, ONNX_ARTIFACT)
        timings = interleaved_timings(
            deployed.passes, rounds=settings.rounds, warmup=settings.warmup, iters=settings.iters,
            seed=settings.seed, clock=clock, on_round=lambda i: log(f"bench: round {i + 1}/{settings.rounds}"),
        )
    results = []
    for run in runs:
        results += record_cell(store, run, deployments, deployed, timings, settings, cells[run.run_id].img, clock,
                               cells=len(runs))
    return results


def runs_to_bench(store: Store, experiment: str, run_ids: tuple[str, ...]) -> list[CompletedRun]:
    """The experiment's completed cells (only `run_ids` when given); BenchError when none."""
    try:
        return runs_to_measure(store, experiment, run_ids, "bench")
    except ValueError as err:
        raise BenchError(str(err)) from None


def check_clock(settings: BenchSettings) -> None:
    if settings.clock not in ("auto", "wall", "cpu"):
        raise BenchError(f"clock={settings.clock!r}: expected auto, wall or cpu")
    if settings.clock == "cpu" and (settings.device != "cpu" or settings.threads != 1):
        raise BenchError("clock=cpu needs device=cpu and threads=1 (CPU time of several threads is not latency)")


@dataclass(frozen=True)
class LoadedCell:
    """A trained cell ready to deploy: its model, the size it is timed at and its own."""

    model: nn.Module
    img: int
    own_img: int  # its train.img_size: only an export at that size is logged on its run
    calibration: Callable[[tuple[int, int]], Calibration]


def load_cells(
    store: Store, experiment: str, runs: list[CompletedRun], settings: BenchSettings, directory: Path
) -> dict[str, LoadedCell]:
    cells = {}
    for run in runs:
        try:
            config, model = load_run(store.uri, run.run_id, directory / run.run_id)
        except ExportError as err:
            raise BenchError(f"experiment {experiment!r} ({run.run_name}): {err}") from None
        own_img = int(OmegaConf.select(config, "train.img_size", default=0) or 0)
        img = settings.img or own_img
        if img < 32 or img % 32:
            raise BenchError(f"run {run.run_id}: img={img}: expected a positive multiple of 32")
        cells[run.run_id] = LoadedCell(model, img, own_img, cell_calibration(config, run.run_name, img, settings))
    return cells


def record_cell(
    store: Store, run: CompletedRun, deployments: list[Deployment], deployed: DeployedPasses,
    timings: Mapping[tuple[str, str], np.ndarray], settings: BenchSettings, img: int, clock: str, *, cells: int,
) -> list[BenchResult]:
    """One cell's figures onto its run: per method the summary metrics, the tag saying how it
    was measured (or why it is unsupported) and the round medians the report pairs by round."""
    metrics: dict[str, float] = {}
    tags: dict[str, str] = {}
    measured: list[BenchResult] = []
    for deployment in deployments:
        method = method_name(deployment, settings.threads, settings.batch, img, clock)
        description = method_description(deployment, settings, img, cells)
        reason = deployed.unsupported.get((run.run_id, deployment.key))
        if reason is not None:  # a named, logged cell: no figures, the reason in its tag
            tags[schema.bench_tag(method)] = json.dumps(description | {"status": "unsupported", "reason": reason})
            continue
        times = timings[(run.run_id, deployment.key)]
        summary = summarise(times, settings.seed)
        metrics.update({schema.bench_metric(method, k): v for k, v in summary.metrics().items()})
        tags[schema.bench_tag(method)] = json.dumps(description | deployed.descriptions[(run.run_id, deployment.key)])
        measured.append(BenchResult(run.run_id, run.run_name, method, summary, times))
    recorder = RunTracker(store, run.run_id)
    recorder.log_metrics(metrics)
    recorder.set_tags(tags)
    for result in measured:
        # Round r of every cell shares one pass over the machine: the report pairs them.
        recorder.log_json(
            {"round_medians_ms": np.median(result.times_ms, axis=1).tolist(), "seed": settings.seed},
            schema.bench_rounds_artifact(result.method),
        )
    return measured
