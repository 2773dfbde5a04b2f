"""One grid cell, end to end: config → model → train → evaluate (COCO) → measure → MLflow.

`run(cfg)` is the whole of a run; `python -m lightyolo.run` is only its Hydra face, and the
tests call it through Hydra's compose API, so both exercise the same code.
"""

from __future__ import annotations

import hashlib
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
from hydra.core.hydra_config import HydraConfig
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf, open_dict

import lightyolo
from lightyolo.bench.flops import gflops
from lightyolo.bench.latency import measure_latency
from lightyolo.bench.params import count_parameters
from lightyolo.data.dataset import AugmentHyp, DetectionDataset
from lightyolo.data.loader import build_dataloader
from lightyolo.data.records import DatasetSpec
from lightyolo.eval.evaluate import EvalResult, evaluate, ground_truth_for
from lightyolo.models.detector import Detector, build_detector
from lightyolo.models.weights import load_weights
from lightyolo.tracking import PastRun, RunTracker, default_tracking_uri, flatten, runs_with_hash
from lightyolo.train.checkpoint import BEST, LAST, load_checkpoint
from lightyolo.train.loop import EpochReport, TrainResult, train

log = logging.getLogger(__name__)

GROUPS = ("backbone", "neck", "operator", "dataset")
# Keys that say where or how a run executes, not what it computes (excluded from the hash).
EXECUTION_KEYS = (
    "hydra", "mlflow", "experiment", "rerun", "dataset.root", "dataset.cache_dir", "train.workers",
)


@dataclass
class RunResult:
    run_id: str
    status: str
    metrics: dict[str, float] = field(default_factory=dict)
    output_dir: Path | None = None


def group_choices(cfg: DictConfig) -> dict[str, str]:
    """The option chosen in each config group (`hydra.runtime.choices`)."""
    if "hydra" in cfg:
        choices = cfg.hydra.runtime.choices
    elif HydraConfig.initialized():
        choices = HydraConfig.get().runtime.choices
    else:
        raise ValueError(
            "config has no hydra.runtime.choices: compose it with return_hydra_config=True "
            "or run it through `python -m lightyolo.run`"
        )
    return {group: str(choices[group]) for group in GROUPS}


def plain_config(cfg: DictConfig) -> dict[str, Any]:
    """The resolved config without Hydra's own node."""
    if "hydra" in cfg:  # Hydra's node holds job-time interpolations: drop it unresolved
        cfg = cfg.copy()
        with open_dict(cfg):
            del cfg["hydra"]
    return OmegaConf.to_container(cfg, resolve=True)


def config_hash(cfg: dict[str, Any]) -> str:
    """Identity of a cell: the resolved config minus launcher/paths (EXECUTION_KEYS)."""
    flat = flatten(cfg)
    kept = {
        k: v for k, v in flat.items()
        if not any(k == key or k.startswith(key + ".") for key in EXECUTION_KEYS)
    }
    return hashlib.sha256(json.dumps(kept, sort_keys=True).encode()).hexdigest()[:16]


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


def run_name(choices: dict[str, str], seed: int) -> str:
    return f"{choices['backbone']}-{choices['neck']}-{choices['operator']}-s{seed}"


def run(cfg: DictConfig, *, output_dir: Path | None = None, sweep_id: str = "") -> RunResult:
    """Train, evaluate, measure and log one cell; a failure ends its MLflow run as FAILED.

    A cell whose config hash already has a completed run in the experiment is skipped
    (unless `rerun=true`); a cell whose run was cut off (still RUNNING, with a `last.pt`)
    continues that same MLflow run from its checkpoint.
    """
    choices = group_choices(cfg)
    config = plain_config(cfg)
    tracking_uri = config["mlflow"]["tracking_uri"] or default_tracking_uri(Path.cwd())
    config["mlflow"]["tracking_uri"] = tracking_uri
    experiment, name, cell_hash = config["experiment"], run_name(choices, config["seed"]), config_hash(config)

    past = [] if config.get("rerun") else runs_with_hash(tracking_uri, experiment, cell_hash)
    completed = next((r for r in past if r.status == "completed"), None)
    if completed is not None:
        log.info("skipping %s: already completed as MLflow run %s", name, completed.run_id)
        return RunResult(completed.run_id, "skipped")
    tags = {"sweep_id": sweep_id, "git_sha": git_sha(), "lightyolo_version": lightyolo.__version__}
    resume, tracker, out = _resume_cut_off_run(past, tracking_uri, tags)
    if tracker is None:
        out = Path(output_dir or tempfile.mkdtemp(prefix="lightyolo-")).resolve()
        tags |= {**choices, "seed": str(config["seed"]), "config_hash": cell_hash,
                 "status": "running", "output_dir": str(out)}
        tracker = RunTracker.start(
            tracking_uri, experiment, run_name=name, tags=tags, params=flatten(config)
        )
    out.mkdir(parents=True, exist_ok=True)
    log.info("MLflow run %s (%s) of %s in %s", tracker.run_id, tracking_uri, name, out)
    try:
        metrics = _run_cell(cfg, tracker, out, resume)
    except BaseException as exc:
        tracker.finish("failed", error=f"{type(exc).__name__}: {exc}")
        raise
    tracker.finish("completed")
    return RunResult(tracker.run_id, "completed", metrics, out)


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


def _run_cell(
    cfg: DictConfig, tracker: RunTracker, out: Path, resume: dict[str, Any] | None
) -> dict[str, float]:
    seed_everything(cfg.seed)
    if cfg.train.threads:
        torch.set_num_threads(int(cfg.train.threads))
    device = resolve_device(str(cfg.train.device))
    (out / "config.yaml").write_text(OmegaConf.to_yaml(plain_config(cfg)))
    tracker.log_artifact(out / "config.yaml")

    spec: DatasetSpec = instantiate(cfg.dataset)
    if spec.issues:
        log.info("dataset %s: the readers counted %s", spec.name, dict(spec.issues))
        tracker.set_tags({"data_issues": json.dumps(dict(spec.issues))})
    model = build_detector(
        cfg.backbone, cfg.neck, cfg.operator, scale=cfg.model.scale, nc=spec.nc
    ).to(device)
    if cfg.model.weights:
        report = load_weights(model, Path(cfg.model.weights).expanduser())
        log.info("weights %s: %s", cfg.model.weights, report)
        tracker.set_tags({"weights_transferred": str(report)})

    evaluate_model = _evaluator(cfg, spec, model, device)
    weights_dir = out / "weights"
    if cfg.train.epochs > 0:
        result = _train(cfg, spec, model, device, tracker, evaluate_model, weights_dir, resume)
        model.load_state_dict(load_checkpoint(weights_dir / BEST)["model"])
        final: EvalResult = result.best_eval
        if final is None:  # the best epoch was before a resume: evaluate its weights again
            _, final = evaluate_model(model)
        train_metrics = {
            "train_seconds": result.seconds,
            "train_images_per_s": result.images_per_s,
        }
    else:
        _, final = evaluate_model(model)
        train_metrics = {"train_seconds": 0.0, "train_images_per_s": 0.0}

    latency = measure_latency(
        model, cfg.train.img_size, device, warmup=cfg.bench.warmup, iters=cfg.bench.iters
    )
    params = count_parameters(model)
    metrics = {
        **{k: float(v) for k, v in final.metrics.items()},
        "params": float(params),
        "params_m": params / 1e6,
        "gflops": gflops(model, cfg.train.img_size),
        "latency_ms": latency.median_ms,
        "latency_p90_ms": latency.p90_ms,
        "fps": latency.fps,
        "eval_seconds": final.seconds,
        **train_metrics,
    }
    tracker.log_metrics(metrics)
    tracker.set_tags(
        {
            "latency_device": latency.device,
            "latency_threads": str(latency.threads),
            "latency_batch": str(latency.batch),
        }
    )
    tracker.log_json(final.predictions, "eval/predictions.json")
    tracker.log_json(final.metrics, "eval/coco_stats.json")
    for name in (LAST, BEST):
        if (weights_dir / name).exists():
            tracker.log_artifact(weights_dir / name, "weights")
    log.info(
        "mAP50 %.3f, mAP50-95 %.3f, %.2f M params, %.2f GFLOPs, %.1f ms (%s)",
        metrics["map50"], metrics["map50_95"], metrics["params_m"], metrics["gflops"],
        metrics["latency_ms"], latency.device,
    )
    return metrics


def _evaluator(
    cfg: DictConfig, spec: DatasetSpec, model: Detector, device: torch.device
) -> Callable[[torch.nn.Module], tuple[dict[str, float], EvalResult]]:
    """A function evaluating any model (the EMA during training) on the val split."""
    stride = int(model.stride.max())
    dataset = DetectionDataset(
        spec.val, cfg.train.img_size, augment=False, rect=cfg.eval.rect,
        batch_size=cfg.eval.batch_size, stride=stride, cache_images=cfg.train.cache_images,
    )
    loader = build_dataloader(
        dataset, batch_size=cfg.eval.batch_size, workers=cfg.train.workers, shuffle=False,
        seed=cfg.seed, pin_memory=device.type == "cuda",
    )
    coco_gt = ground_truth_for(spec)

    def evaluate_model(candidate: torch.nn.Module) -> tuple[dict[str, float], EvalResult]:
        result = evaluate(
            candidate, loader, coco_gt=coco_gt, category_ids=spec.category_ids,
            conf_thres=cfg.eval.conf_thres, iou_thres=cfg.eval.iou_thres,
            max_det=cfg.eval.max_det, device=device,
            amp=bool(cfg.train.amp) and device.type == "cuda",  # CPU autocast is bfloat16
        )
        return result.metrics, result

    return evaluate_model


def _train(
    cfg: DictConfig,
    spec: DatasetSpec,
    model: Detector,
    device: torch.device,
    tracker: RunTracker,
    evaluate_model: Callable[[torch.nn.Module], tuple[dict[str, float], EvalResult]],
    weights_dir: Path,
    resume: dict[str, Any] | None,
) -> TrainResult:
    """Train on the train split, logging each epoch's losses, lr and val mAP to MLflow."""
    dataset = DetectionDataset(
        spec.train, cfg.train.img_size, augment=True,
        hyp=AugmentHyp(**OmegaConf.to_container(cfg.train.augment)),
        batch_size=cfg.train.batch_size, stride=int(model.stride.max()),
        cache_images=cfg.train.cache_images,
    )
    loader = build_dataloader(
        dataset, batch_size=cfg.train.batch_size, workers=cfg.train.workers, shuffle=True,
        seed=cfg.seed, pin_memory=device.type == "cuda",
    )

    def log_epoch(report: EpochReport) -> None:
        metrics = {f"train/{k}": v for k, v in report.losses.items()}
        metrics["lr"] = report.lr
        if report.val is not None:
            metrics["val/map50"] = report.val["map50"]
            metrics["val/map50_95"] = report.val["map50_95"]
        tracker.log_metrics(metrics, step=report.epoch + 1)

    return train(
        model, loader, cfg=cfg.train, device=device, seed=cfg.seed,
        checkpoint_dir=weights_dir, evaluate=evaluate_model, on_epoch_end=log_epoch,
        resume=resume, extra_state={"mlflow_run_id": tracker.run_id},
    )
