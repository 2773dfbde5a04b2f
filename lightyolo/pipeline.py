"""One grid cell, end to end: config → model → train → evaluate (COCO) → measure → MLflow.

`run(cfg)` is the whole of a run; `python -m lightyolo.run` is only its Hydra face, and the
tests call it through Hydra's compose API, so both exercise the same code. The config is
resolved once (`settings.resolve`); the stages `build → fit → evaluate → measure → log`
take and return typed values.
"""

from __future__ import annotations

import json
import logging
import random
import subprocess
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

import lightyolo
from lightyolo.bench.flops import gflops
from lightyolo.bench.latency import LatencyResult, measure_latency
from lightyolo.bench.params import count_parameters
from lightyolo.data.dataset import AugmentHyp, DetectionDataset
from lightyolo.data.loader import build_dataloader
from lightyolo.data.records import DatasetSpec
from lightyolo.eval.evaluate import EvalResult, evaluate, ground_truth_for
from lightyolo.models.detector import Detector, build_detector
from lightyolo.models.weights import load_weights
from lightyolo.settings import Settings, resolve
from lightyolo.tracking import PastRun, RunTracker, flatten, parent_run_id_from_env, runs_with_hash
from lightyolo.train.checkpoint import BEST, LAST, load_checkpoint
from lightyolo.train.loop import EpochReport, TrainResult, train

log = logging.getLogger(__name__)

Evaluator = Callable[[torch.nn.Module], tuple[dict[str, float], EvalResult]]


@dataclass
class RunResult:
    run_id: str
    status: str
    metrics: dict[str, float] = field(default_factory=dict)
    output_dir: Path | None = None


@dataclass
class Built:
    """The build stage's output: the data spec and the model on its device."""

    spec: DatasetSpec
    model: Detector
    device: torch.device
    evaluate: Evaluator  # evaluates any model (the EMA during training) on the val split


@dataclass
class Fitted:
    """The fit stage's output: where the weights are and how long training took."""

    weights_dir: Path
    train: TrainResult | None  # None when train.epochs = 0

    def metrics(self) -> dict[str, float]:
        if self.train is None:
            return {"train_seconds": 0.0, "train_images_per_s": 0.0}
        return {"train_seconds": self.train.seconds, "train_images_per_s": self.train.images_per_s}


@dataclass
class Measured:
    """The measure stage's output: size, compute and the in-process latency figure."""

    params: int
    gflops: float
    latency: LatencyResult

    def metrics(self) -> dict[str, float]:
        return {
            "params": float(self.params), "params_m": self.params / 1e6, "gflops": self.gflops,
            "latency_ms": self.latency.median_ms, "latency_p90_ms": self.latency.p90_ms,
            "fps": self.latency.fps,
        }


def run(cfg: DictConfig, *, output_dir: Path | None = None, sweep_id: str = "") -> RunResult:
    """Train, evaluate, measure and log one cell; a failure ends its MLflow run as FAILED.

    A cell whose config hash already has a completed run in the experiment is skipped
    (unless `rerun=true`); a cell whose run was cut off (still RUNNING, with a `last.pt`)
    continues that same MLflow run from its checkpoint.
    """
    settings = resolve(cfg)
    ident = settings.run
    past = [] if ident.rerun else runs_with_hash(ident.tracking_uri, ident.experiment, ident.config_hash)
    completed = next((r for r in past if r.status == "completed"), None)
    if completed is not None:
        log.info("skipping %s: already completed as MLflow run %s", ident.name, completed.run_id)
        return RunResult(completed.run_id, "skipped")
    tracker, out, resume = open_run(settings, past, output_dir, sweep_id)
    try:
        prepare_process(settings)
        record_config(settings, tracker, out)
        built = build(settings, tracker)
        fitted = fit(settings, built, tracker, out / "weights", resume)
        final = evaluate_final(built, fitted)
        measured = measure(settings, built)
        metrics = log_results(tracker, final, fitted, measured)
    except BaseException as exc:
        tracker.finish("failed", error=f"{type(exc).__name__}: {exc}")
        raise
    tracker.finish("completed")
    return RunResult(tracker.run_id, "completed", metrics, out)


def open_run(
    settings: Settings, past: list[PastRun], output_dir: Path | None, sweep_id: str
) -> tuple[RunTracker, Path, dict[str, Any] | None]:
    """The MLflow run of this cell: a cut-off one reopened with its checkpoint, else a new one."""
    ident = settings.run
    tags = {"sweep_id": sweep_id, "git_sha": git_sha(), "lightyolo_version": lightyolo.__version__}
    resume, tracker, out = _resume_cut_off_run(past, ident.tracking_uri, tags)
    if tracker is None:
        out = Path(output_dir or tempfile.mkdtemp(prefix="lightyolo-")).resolve()
        tags |= {**ident.choices, "seed": str(ident.seed), "config_hash": ident.config_hash,
                 "status": "running", "output_dir": str(out)}
        tracker = RunTracker.start(
            ident.tracking_uri, ident.experiment, run_name=ident.name, tags=tags,
            params=flatten(settings.config), parent_run_id=parent_run_id_from_env(),
        )
    out.mkdir(parents=True, exist_ok=True)
    log.info("MLflow run %s (%s) of %s in %s", tracker.run_id, ident.tracking_uri, ident.name, out)
    return tracker, out, resume


def _resume_cut_off_run(
    past: list[PastRun], tracking_uri: str, tags: dict[str, str]
) -> tuple[dict[str, Any] | None, RunTracker | None, Path | None]:
    """Reopen the newest cut-off run of this cell that left a checkpoint.

    Cut-off runs without a checkpoint are closed as failed, so each cell ends with one
    completed run."""
    for candidate in (r for r in past if r.mlflow_status == "RUNNING"):
        last = Path(candidate.output_dir or "") / "weights" / LAST
        if candidate.output_dir and last.exists():
            state = load_checkpoint(last)
            tracker = RunTracker.reopen(
                tracking_uri, candidate.run_id,
                tags={**tags, "status": "resumed", "resumed_from_epoch": str(state["epoch"] + 1)},
            )
            log.info("resuming run %s after epoch %d from %s", candidate.run_id, state["epoch"] + 1, last)
            return state, tracker, Path(candidate.output_dir)
        RunTracker(tracking_uri, candidate.run_id).finish(
            "failed", error="cut off before its first checkpoint; the cell was run again"
        )
    return None, None, None


def git_sha() -> str:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=Path(__file__).parent, capture_output=True, text=True, timeout=10,
        )
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    return out.stdout.strip() if out.returncode == 0 else "unknown"


def resolve_device(spec: str) -> torch.device:
    """`auto` → CUDA when available else CPU; `cuda[:N]` must exist."""
    if spec == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if spec.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"train.device={spec} but CUDA is not available (use auto or cpu)")
    try:
        return torch.device(spec)
    except RuntimeError as exc:
        raise ValueError(f"train.device={spec!r}: expected auto, cpu, cuda or cuda:N") from exc


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def prepare_process(settings: Settings) -> None:
    """Seeds and torch threads, before anything is built."""
    seed_everything(settings.run.seed)
    if settings.execution.threads:
        torch.set_num_threads(settings.execution.threads)


def record_config(settings: Settings, tracker: RunTracker, out: Path) -> None:
    """The resolved config as `config.yaml`, beside the run and as its artifact."""
    (out / "config.yaml").write_text(OmegaConf.to_yaml(settings.config))
    tracker.log_artifact(out / "config.yaml")


def build(settings: Settings, tracker: RunTracker) -> Built:
    """The dataset spec, the detector (with `model.weights` loaded) and its val evaluator."""
    device = resolve_device(settings.execution.device)
    spec: DatasetSpec = instantiate(settings.config["dataset"])
    if spec.issues:
        log.info("dataset %s: the readers counted %s", spec.name, dict(spec.issues))
        tracker.set_tags({"data_issues": json.dumps(dict(spec.issues))})
    config = settings.config
    model = build_detector(
        config["backbone"], config["neck"], config["operator"], scale=settings.scale, nc=spec.nc
    ).to(device)
    if settings.weights is not None:
        report = load_weights(model, settings.weights)
        log.info("weights %s: %s", settings.weights, report)
        tracker.set_tags({"weights_transferred": str(report)})
    return Built(spec, model, device, _evaluator(settings, spec, model, device))


def _evaluator(settings: Settings, spec: DatasetSpec, model: Detector, device: torch.device) -> Evaluator:
    """A function evaluating any model (the EMA during training) on the val split."""
    options, execution = settings.eval, settings.execution
    dataset = DetectionDataset(
        spec.val, settings.train.img_size, augment=False, rect=options.rect,
        batch_size=options.batch_size, stride=int(model.stride.max()),
        cache_images=execution.cache_images,
    )
    loader = build_dataloader(
        dataset, batch_size=options.batch_size, workers=execution.workers, shuffle=False,
        seed=settings.run.seed, pin_memory=device.type == "cuda",
    )
    coco_gt = ground_truth_for(spec)

    def evaluate_model(candidate: torch.nn.Module) -> tuple[dict[str, float], EvalResult]:
        result = evaluate(
            candidate, loader, coco_gt=coco_gt, category_ids=spec.category_ids,
            conf_thres=options.conf_thres, iou_thres=options.iou_thres,
            max_det=options.max_det, device=device,
            amp=settings.train.amp and device.type == "cuda",  # CPU autocast is bfloat16
        )
        return result.metrics, result

    return evaluate_model


def fit(
    settings: Settings, built: Built, tracker: RunTracker, weights_dir: Path,
    resume: dict[str, Any] | None,
) -> Fitted:
    """Train on the train split, logging each epoch's losses, lr and val mAP to MLflow."""
    if settings.train.epochs <= 0:
        return Fitted(weights_dir, None)
    execution = settings.execution
    dataset = DetectionDataset(
        built.spec.train, settings.train.img_size, augment=True, hyp=AugmentHyp(**settings.augment),
        batch_size=settings.train.batch_size, stride=int(built.model.stride.max()),
        cache_images=execution.cache_images,
    )
    loader = build_dataloader(
        dataset, batch_size=settings.train.batch_size, workers=execution.workers, shuffle=True,
        seed=settings.run.seed, pin_memory=built.device.type == "cuda",
    )

    def log_epoch(report: EpochReport) -> None:
        metrics = {f"train/{k}": v for k, v in report.losses.items()}
        metrics["lr"] = report.lr
        if report.val is not None:
            metrics["val/map50"] = report.val["map50"]
            metrics["val/map50_95"] = report.val["map50_95"]
        tracker.log_metrics(metrics, step=report.epoch + 1)

    result = train(
        built.model, loader, settings=settings.train, device=built.device, seed=settings.run.seed,
        checkpoint_dir=weights_dir, evaluate=built.evaluate, on_epoch_end=log_epoch,
        resume=resume, extra_state={"mlflow_run_id": tracker.run_id},
    )
    return Fitted(weights_dir, result)


def evaluate_final(built: Built, fitted: Fitted) -> EvalResult:
    """The reported evaluation: the best epoch's weights (loaded into the model), or the
    model as built when nothing was trained."""
    if fitted.train is None:
        return built.evaluate(built.model)[1]
    built.model.load_state_dict(load_checkpoint(fitted.weights_dir / BEST)["model"])
    if fitted.train.best_eval is None:  # the best epoch was before a resume: evaluate it again
        return built.evaluate(built.model)[1]
    return fitted.train.best_eval


def measure(settings: Settings, built: Built) -> Measured:
    """Parameters, GFLOPs at the training size and a quick in-process latency."""
    img_size = settings.train.img_size
    latency = measure_latency(
        built.model, img_size, built.device, warmup=settings.bench.warmup, iters=settings.bench.iters
    )
    return Measured(count_parameters(built.model), gflops(built.model, img_size), latency)


def log_results(tracker: RunTracker, final: EvalResult, fitted: Fitted, measured: Measured) -> dict[str, float]:
    """Final metrics, latency tags, COCO predictions/stats and the weights, onto the run."""
    metrics = {
        **{k: float(v) for k, v in final.metrics.items()},
        **measured.metrics(),
        "eval_seconds": final.seconds,
        **fitted.metrics(),
    }
    tracker.log_metrics(metrics)
    latency = measured.latency
    tracker.set_tags({
        "latency_device": latency.device,
        "latency_threads": str(latency.threads),
        "latency_batch": str(latency.batch),
    })
    tracker.log_json(final.predictions, "eval/predictions.json")
    tracker.log_json(final.metrics, "eval/coco_stats.json")
    for name in (LAST, BEST):
        if (fitted.weights_dir / name).exists():
            tracker.log_artifact(fitted.weights_dir / name, "weights")
    log.info(
        "mAP50 %.3f, mAP50-95 %.3f, %.2f M params, %.2f GFLOPs, %.1f ms (%s)",
        metrics["map50"], metrics["map50_95"], metrics["params_m"], metrics["gflops"],
        metrics["latency_ms"], latency.device,
    )
    return metrics
