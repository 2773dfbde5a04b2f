"""One grid cell, end to end: config → model → train → evaluate (COCO) → measure → MLflow.

`run(cfg)` is the whole of a run; `python -m lightyolo.run` is only its Hydra face, and the
tests call it through Hydra's compose API, so both exercise the same code. The config is
resolved once (`settings.resolve`) and the dataset read once, before the skip check (the
cell's identity covers its content); the stages `build → fit → evaluate → measure → log`
take and return typed values.
"""

from __future__ import annotations

import json
import logging
import random
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from hydra.errors import InstantiationException
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

import lightyolo
from lightyolo.measure.flops import gflops
from lightyolo.measure.latency import LatencyResult, measure_latency
from lightyolo.measure.params import count_parameters
from lightyolo.cell_claim import HeldElsewhere, claim_cell
from lightyolo.data.dataset import AugmentHyp, DetectionDataset
from lightyolo.data.loader import build_dataloader
from lightyolo.data.records import DatasetSpec
from lightyolo.eval.evaluate import EvalResult, evaluate, ground_truth_for
from lightyolo.identity import REUSE_KEY, CellIdentity, cell_identity
from lightyolo.models.detector import Detector, build_detector
from lightyolo.models.weights import load_weights
from lightyolo.settings import Settings, resolve
from lightyolo import cell_checkpoints
from lightyolo.store import schema
from lightyolo.store.claims import beat_claim_record, release_claim_record
from lightyolo.store.client import Store
from lightyolo.store.health import check_store
from lightyolo.store.ownership import owner_is_alive, owner_tags
from lightyolo.store.queries import PastRun, runs_with_hash
from lightyolo.store.runs import RunTracker, cell_params, parent_run_id_from_env, source_tags
from lightyolo.store.schema import (
    CLAIMED_RUN_TAG, CODE_IDENTITY_TAG, COMPLETED, EVAL_SPLIT_TAG, FAILED, GIT_SHA_TAG, HEARTBEAT_TAG, INTERRUPTED, OUTPUT_DIR_TAG,
    OWNER_HOST_TAG, OWNER_PID_TAG, PARENT_RUN_TAG, RECIPE_TAG, RESUMED, RESUMED_FROM_TAG, RUNNING, SEED_TAG, STATUS_TAG,
    SWEEP_ID_TAG, VERSION_TAG,
)
from lightyolo.train.checkpoint import BEST, LAST, CheckpointWriteError, load_checkpoint
from lightyolo.train.loop import EpochReport, TrainResult, train

log = logging.getLogger(__name__)

Evaluator = Callable[[torch.nn.Module], tuple[dict[str, float], EvalResult]]


@dataclass
class RunResult:
    run_id: str
    status: str  # completed / skipped / running elsewhere
    metrics: dict[str, float] = field(default_factory=dict)
    output_dir: Path | None = None


@dataclass
class Built:
    """The build stage's output: the data spec, the model on its device, and its evaluators."""

    spec: DatasetSpec
    model: Detector
    device: torch.device
    evaluate: Evaluator  # evaluates any model (the EMA during training) on the val split
    evaluate_test: Evaluator | None  # the same on the test split; None when there is none


@dataclass
class Fitted:
    """The fit stage's output: where the weights are and how long training took."""

    weights_dir: Path
    train: TrainResult | None  # None when train.epochs = 0

    def metrics(self) -> dict[str, float]:
        if self.train is None:
            return {schema.TRAIN_SECONDS: 0.0, schema.TRAIN_IMAGES_PER_S: 0.0}
        return {schema.TRAIN_SECONDS: self.train.seconds, schema.TRAIN_IMAGES_PER_S: self.train.images_per_s}


@dataclass
class Final:
    """The reported evaluation, the split it was measured on, and the best epoch on val."""

    result: EvalResult
    split: str  # "test" (best-on-val weights) or "val" (the final epoch's EMA)
    best: dict[str, float]  # val_best/map50_95, val_best/map50, val_best/epoch; empty when nothing trained


@dataclass
class Measured:
    """The measure stage's output: size, compute and the in-process latency figure."""

    params: int
    gflops: float
    gflops_640: float  # papers quote GFLOPs at 640 whatever size they train at
    latency: LatencyResult

    def metrics(self) -> dict[str, float]:
        return {
            schema.PARAMS: float(self.params), schema.PARAMS_M: self.params / 1e6, schema.GFLOPS: self.gflops,
            schema.GFLOPS_640: self.gflops_640,
            **schema.quick_latency_metrics(self.latency.median_ms, self.latency.p90_ms, self.latency.fps),
        }


def run(cfg: DictConfig, *, output_dir: Path | None = None, sweep_id: str = "") -> RunResult:
    """Train, evaluate, measure and log one cell; a failure ends its MLflow run as FAILED.

    The store is checked first (`store.health.check_store`), then the dataset is read: the cell's
    identity (`identity.cell_identity`) includes its content, the weights file's digest and
    the code's. A cell with a completed run in the experiment is skipped (unless
    `rerun=true`); otherwise the cell is claimed (`cell_claim`, docs/reliability.md): a cell
    whose owner lives is left alone ("running elsewhere"), and a cut-off or interrupted run is
    continued from its `last.pt` by the one launch that wins the claim. A signal or a failed
    checkpoint write ends the run as interrupted (resumable), any other failure as FAILED.
    """
    settings = resolve(cfg)
    ident = settings.run
    store = Store(ident.tracking_uri)
    check_store(store.uri, timeout_s=ident.store_check_timeout_s)
    spec = read_dataset_or_fail(settings, output_dir, sweep_id)
    cell = cell_identity(settings.config, spec, settings.weights)
    tag, value = cell.lookup
    past = [] if ident.rerun else runs_with_hash(store, ident.experiment, value, tag=tag)
    completed = next((r for r in past if r.status == COMPLETED), None)
    if completed is not None:
        return skip_completed(settings, cell, completed)
    claim = claim_cell(store, store.ensure_experiment(ident.experiment), value, timeout_s=ident.heartbeat_timeout_s)
    if isinstance(claim, HeldElsewhere):
        log.info("leaving %s alone: %s", ident.name, claim.describe())
        return RunResult(claim.tags.get(CLAIMED_RUN_TAG, ""), "running elsewhere")
    try:
        opened = open_claimed_cell(settings, cell, output_dir, sweep_id, claim.name)
    except BaseException:
        release_claim_record(store, claim.name)
        raise
    if isinstance(opened, RunResult):
        return opened
    tracker, out, resume = opened
    try:
        prepare_process(settings)
        record_config(settings, tracker, out)
        log_dataset(settings, spec, cell, tracker)
        built = build(settings, spec, tracker)
        fitted = fit(settings, built, tracker, out / schema.WEIGHTS_DIR, resume)
        final = evaluate_final(built, fitted)
        measured = measure(settings, built)
        metrics = log_results(tracker, final, fitted, measured, step=max(settings.train.epochs, 0))
    except (KeyboardInterrupt, SystemExit, CheckpointWriteError) as exc:
        # Not the cell's fault (SystemExit: submitit's requeue exits the job from its signal
        # handler): the run stays resumable from its last.pt (a rerun continues it).
        tracker.finish(INTERRUPTED, error=f"{type(exc).__name__}: {exc}")
        raise
    except BaseException as exc:
        tracker.finish(FAILED, error=f"{type(exc).__name__}: {exc}")
        raise
    tracker.finish(COMPLETED)
    return RunResult(tracker.run_id, COMPLETED, metrics, out)


def open_claimed_cell(
    settings: Settings, cell: CellIdentity, output_dir: Path | None, sweep_id: str, claim: str
) -> RunResult | tuple[RunTracker, Path, dict[str, Any] | None]:
    """With the cell claimed, look again (a run may have completed since the first look):
    a completed cell is skipped, a RUNNING run of a live owner from before claims existed is
    left alone (both release the claim), else the cell's run is opened under the claim."""
    ident = settings.run
    tag, value = cell.lookup
    past = [] if ident.rerun else runs_with_hash(Store(ident.tracking_uri), ident.experiment, value, tag=tag)
    completed = next((r for r in past if r.status == COMPLETED), None)
    result = skip_completed(settings, cell, completed) if completed is not None else live_owner(settings, past)
    if result is not None:
        release_claim_record(Store(ident.tracking_uri), claim)
        return result
    return open_run(settings, cell, past, output_dir, sweep_id, claim)


def read_dataset(settings: Settings) -> DatasetSpec:
    """The `dataset` node instantiated; a reader's error is raised as itself (one line naming
    the file or split), not inside Hydra's InstantiationException with its config dump."""
    try:
        spec = instantiate(settings.config["dataset"])
    except InstantiationException as exc:
        if exc.__cause__ is None:
            raise
        raise exc.__cause__ from None
    require_ground_truth(spec)
    return spec


def require_ground_truth(spec: DatasetSpec) -> None:
    """ValueError when the evaluated split (test if there is one, else val) has no ground-truth
    box: mAP is undefined there, and a logged 0.000 would read as a measurement."""
    split, records, coco_gt = (("test", spec.test, spec.test_coco_gt) if spec.test is not None
                               else ("val", spec.val, spec.val_coco_gt))
    boxes = len(coco_gt.get("annotations", [])) if coco_gt is not None else sum(len(r.boxes) for r in records)
    if boxes == 0:
        raise ValueError(f"dataset {spec.name}: no ground-truth box in its {split} split ({len(records)} images, "
                         "every label file empty or missing): mAP is undefined without one")


def read_dataset_or_fail(settings: Settings, output_dir: Path | None, sweep_id: str) -> DatasetSpec:
    """`read_dataset`, recording a failure as a FAILED MLflow run (no identity: the data is
    what could not be read) before raising it."""
    try:
        return read_dataset(settings)
    except Exception as exc:
        ident = settings.run
        out = Path(output_dir or tempfile.mkdtemp(prefix="lightyolo-")).resolve()
        tracker = RunTracker.start(
            Store(ident.tracking_uri), ident.experiment, run_name=ident.name,
            tags={**_common_tags(sweep_id), **ident.choices, SEED_TAG: str(ident.seed),
                  STATUS_TAG: RUNNING, OUTPUT_DIR_TAG: str(out)},
            params=cell_params(settings.config, ident.choices),
            parent_run_id=parent_run_id_from_env(),
        )
        tracker.finish(FAILED, error=f"{type(exc).__name__}: {exc}")
        raise


def skip_completed(settings: Settings, cell: CellIdentity, completed: PastRun) -> RunResult:
    """The cell is done: say so. A run kept from other code (reuse_across_code) is tagged so,
    and the report counts it as kept across code versions."""
    log.info("skipping %s: already completed as MLflow run %s", settings.run.name, completed.run_id)
    if cell.reuse_across_code and completed.tags.get(CODE_IDENTITY_TAG) != cell.code_identity:
        log.info("run %s was made by code %s, kept for %s (reuse_across_code=true)",
                 completed.run_id, completed.tags.get(CODE_IDENTITY_TAG, "unknown"), cell.code_identity)
        RunTracker(Store(settings.run.tracking_uri), completed.run_id).set_tags({REUSE_KEY: "true"})
    return RunResult(completed.run_id, "skipped", reported_figures(Store(settings.run.tracking_uri), completed))


def reported_figures(store: Store, completed: PastRun) -> dict[str, float]:
    """The COCO figures a completed run reported, under their plain names (`map50_95`): a
    skipped cell's result carries them, so a sweep's summary and the adaptive sweep's verdicts
    count it like a cell trained now."""
    logged = store.get_run(completed.run_id).data.metrics
    split = completed.tags.get(EVAL_SPLIT_TAG)
    figures = {}
    for name in schema.COCO_METRICS:
        found = next((logged[source] for source in schema.reported_metric_sources(name, split) if source in logged), None)
        if found is not None:
            figures[name] = float(found)
    return figures


def live_owner(settings: Settings, past: list[PastRun]) -> RunResult | None:
    """A RUNNING run of this cell whose owner is still alive (its pid on this host, or a
    heartbeat within `mlflow.heartbeat_timeout_s`): left alone, and said so."""
    now, host = time.time(), socket.gethostname()
    for candidate in (r for r in past if r.mlflow_status == "RUNNING"):
        if owner_is_alive(candidate.tags, now=now, host=host, timeout_s=settings.run.heartbeat_timeout_s):
            tags = candidate.tags
            age = now - float(tags[HEARTBEAT_TAG])
            log.info("leaving run %s alone: still running on %s pid %s (heartbeat %.0fs ago)",
                     candidate.run_id, tags.get(OWNER_HOST_TAG), tags.get(OWNER_PID_TAG), age)
            return RunResult(candidate.run_id, "running elsewhere")
    return None


def _common_tags(sweep_id: str) -> dict[str, str]:
    sha = git_sha()
    return {
        SWEEP_ID_TAG: sweep_id, GIT_SHA_TAG: sha, VERSION_TAG: lightyolo.__version__,
        **source_tags(None if sha == "unknown" else sha, "lightyolo.run"),
    }


def open_run(
    settings: Settings, cell: CellIdentity, past: list[PastRun], output_dir: Path | None, sweep_id: str,
    claim: str | None = None,
) -> tuple[RunTracker, Path, dict[str, Any] | None]:
    """The MLflow run of this cell: a cut-off one reopened with its checkpoint, else a new one
    (nested under the sweep's parent run when a sweep launched it; a resumed one moves under
    the sweep that resumes it). Its owner tags are written with it, so its liveness is known
    from the start; its heartbeat (which also beats `claim`) starts."""
    ident = settings.run
    store = Store(ident.tracking_uri)
    tags = {**_common_tags(sweep_id), **cell.tags(), **owner_tags()}
    parent = parent_run_id_from_env()
    fresh = Path(output_dir or tempfile.mkdtemp(prefix="lightyolo-")).resolve()
    resume, tracker, out = _resume_cut_off_run(past, store, {**tags, PARENT_RUN_TAG: parent} if parent else tags, fresh)
    if tracker is None:
        out = fresh
        tags |= {**ident.choices, SEED_TAG: str(ident.seed), RECIPE_TAG: ident.recipe, STATUS_TAG: RUNNING,
                 OUTPUT_DIR_TAG: str(out)}
        tracker = RunTracker.start(
            store, ident.experiment, run_name=ident.name, tags=tags,
            params=cell_params(settings.config, ident.choices), parent_run_id=parent,
        )
    if claim is not None:
        tracker.claim_name = claim
        beat_claim_record(store, claim, {CLAIMED_RUN_TAG: tracker.run_id})
    tracker.start_heartbeat()
    out.mkdir(parents=True, exist_ok=True)
    log.info("MLflow run %s (%s) of %s in %s", tracker.run_id, ident.tracking_uri, ident.name, out)
    return tracker, out, resume


def _resume_cut_off_run(
    past: list[PastRun], store: Store, tags: dict[str, str], fresh: Path
) -> tuple[dict[str, Any] | None, RunTracker | None, Path | None]:
    """Reopen the newest cut-off run of this cell that left a checkpoint: RUNNING (its owner
    was killed; `live_owner` and the claim have ruled out live ones) or interrupted (stopped by
    a signal or a failed write). The checkpoint is the one in its output dir, else the one in
    the store, fetched into `fresh` (another node, a deleted working dir: cell_checkpoints.py).

    Cut-off runs without a checkpoint are closed as failed, so each cell ends with one
    completed run."""
    for candidate in (r for r in past if r.mlflow_status == "RUNNING" or r.status == INTERRUPTED):
        found = cell_checkpoints.checkpoint_dir(store, candidate.run_id, candidate.output_dir, fresh)
        if found is not None:
            out, source = found
            last = out / schema.WEIGHTS_DIR / LAST
            state = load_checkpoint(last)
            tracker = RunTracker.reopen(
                store, candidate.run_id,
                tags={**tags, STATUS_TAG: RESUMED, RESUMED_FROM_TAG: str(state["epoch"] + 1),
                      OUTPUT_DIR_TAG: str(out), schema.CHECKPOINT_SOURCE_TAG: source},
            )
            log.info("resuming run %s after epoch %d from %s", candidate.run_id, state["epoch"] + 1, last)
            return state, tracker, out
        RunTracker(store, candidate.run_id).finish(
            FAILED, error="cut off before its first checkpoint; the cell was run again"
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
    torch.set_num_threads(settings.execution.threads)


def record_config(settings: Settings, tracker: RunTracker, out: Path) -> None:
    """The resolved config as `config.yaml`, beside the run and as its artifact, and the
    thread count it resolved to (with why: `train.threads=auto` depends on the machine)."""
    (out / schema.CONFIG_ARTIFACT).write_text(OmegaConf.to_yaml(settings.config))
    tracker.log_artifact(out / schema.CONFIG_ARTIFACT)
    tracker.set_tags({schema.THREADS_TAG: str(settings.execution.threads),
                      schema.THREADS_REASON_TAG: settings.execution.threads_reason})


def log_dataset(settings: Settings, spec: DatasetSpec, cell: CellIdentity, tracker: RunTracker) -> None:
    """The dataset as the run's input (name, content fingerprint, source, split sizes), and
    the readers' issue counts as the `data_issues` tag."""
    dataset = settings.config["dataset"]
    splits = {"train": len(spec.train), "val": len(spec.val)}
    if spec.test is not None:
        splits["test"] = len(spec.test)
    tracker.log_dataset(
        name=spec.name, digest=cell.dataset_fingerprint,
        source=str(dataset.get("yaml") or dataset.get("root") or spec.name), splits=splits,
    )
    if spec.issues:
        log.info("dataset %s: the readers counted %s", spec.name, dict(spec.issues))
        tracker.set_tags({schema.DATA_ISSUES_TAG: json.dumps(dict(spec.issues))})


def build(settings: Settings, spec: DatasetSpec, tracker: RunTracker) -> Built:
    """The detector (with `model.weights` loaded) on its device, and its val / test evaluators."""
    device = resolve_device(settings.execution.device)
    config = settings.config
    model = build_detector(
        config["backbone"], config["neck"], config["operator"], scale=settings.scale, nc=spec.nc,
        head_cfg=config.get("head"),
    ).to(device)
    if settings.weights is not None:
        report = load_weights(model, settings.weights)
        log.info("weights %s: %s", settings.weights, report)
        tracker.set_tags({schema.WEIGHTS_TRANSFERRED_TAG: str(report)})
    test = _evaluator(settings, spec, "test", model, device) if spec.test is not None else None
    return Built(spec, model, device, _evaluator(settings, spec, "val", model, device), test)


def _evaluator(
    settings: Settings, spec: DatasetSpec, split: str, model: Detector, device: torch.device
) -> Evaluator:
    """A function evaluating any model (the EMA during training) on `split` (val or test)."""
    options, execution = settings.eval, settings.execution
    dataset = DetectionDataset(
        spec.val if split == "val" else spec.test, settings.train.img_size, augment=False,
        rect=options.rect, batch_size=options.batch_size, stride=int(model.stride.max()),
        cache_images=execution.cache_images,
    )
    loader = build_dataloader(
        dataset, batch_size=options.batch_size, workers=execution.workers, shuffle=False,
        seed=settings.run.seed, pin_memory=device.type == "cuda",
    )
    coco_gt = ground_truth_for(spec, split)

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
        tracker.heartbeat()
        metrics = {schema.train_metric(k): v for k, v in report.losses.items()}
        metrics[schema.LEARNING_RATE] = report.lr
        if report.val is not None:
            metrics |= schema.evaluation_metrics("val", {k: report.val[k] for k in ("map50", "map50_95")})
        tracker.log_metrics(metrics, step=report.epoch + 1)

    result = train(
        built.model, loader, settings=settings.train, device=built.device, seed=settings.run.seed,
        checkpoint_dir=weights_dir, evaluate=built.evaluate, on_epoch_end=log_epoch,
        on_checkpoint=cell_checkpoints.CheckpointMirror(tracker, weights_dir) if settings.run.checkpoint_to_store else None,
        resume=resume,
        extra_state={"mlflow_run_id": tracker.run_id},
    )
    return Fitted(weights_dir, result)


def evaluate_final(built: Built, fitted: Fitted) -> Final:
    """The reported evaluation, kept apart from model selection (which used val).

    With a test split: the best epoch's weights (chosen on val) evaluated on test. Without
    one: the final epoch's EMA weights on val — never the best-of-val figure, which is logged
    as `val_best/*` beside it. Nothing trained: the model as built, on test if there is one.
    The model is left holding the reported weights (the measure stage times it)."""
    split = "test" if built.evaluate_test is not None else "val"
    report_on = built.evaluate_test or built.evaluate
    if fitted.train is None:
        return Final(report_on(built.model)[1], split, {})
    best_state = load_checkpoint(fitted.weights_dir / BEST)
    best = _best_epoch_metrics(built, fitted.train, best_state)
    if built.evaluate_test is not None:
        built.model.load_state_dict(best_state["model"])
        return Final(built.evaluate_test(built.model)[1], split, best)
    built.model.load_state_dict(fitted.train.ema.state_dict())
    last = fitted.train.last_eval  # the last epoch is always evaluated
    if last is None:  # resumed after the final epoch: evaluate its EMA again
        last = built.evaluate(built.model)[1]
    return Final(last, split, best)


def _best_epoch_metrics(built: Built, train: TrainResult, best_state: dict[str, Any]) -> dict[str, float]:
    """`val_best/map50_95`, `val_best/map50`, `val_best/epoch` (1-based) of the epoch kept in best.pt."""
    if train.best_eval is not None:
        metrics = train.best_eval.metrics
    else:  # the best epoch was before a resume: evaluate it again
        built.model.load_state_dict(best_state["model"])
        metrics = built.evaluate(built.model)[0]
    return schema.val_best_metrics(metrics["map50_95"], metrics["map50"], best_state["epoch"] + 1)


def measure(settings: Settings, built: Built) -> Measured:
    """Parameters, GFLOPs at the training size and at 640, and a quick in-process latency."""
    img_size = settings.train.img_size
    latency = measure_latency(
        built.model, img_size, built.device, warmup=settings.bench.warmup, iters=settings.bench.iters
    )
    flops = gflops(built.model, img_size)
    flops_640 = flops if img_size == 640 else gflops(built.model, 640)
    return Measured(count_parameters(built.model), flops, flops_640, latency)


def log_results(
    tracker: RunTracker, final: Final, fitted: Fitted, measured: Measured, *, step: int
) -> dict[str, float]:
    """Final metrics under the names of store/schema.py (the COCO figures prefixed with the
    split they were measured on, at the last epoch's `step`), the best epoch's, latency tags,
    COCO predictions/stats and the weights, onto the run. Returns what was logged, plus the
    COCO figures under their plain names (`map50_95`: what the sweep summary shows)."""
    result = final.result
    metrics = {
        **schema.evaluation_metrics(final.split, result.metrics),
        **final.best,
        **measured.metrics(),
        schema.EVAL_SECONDS: result.seconds,
        **{schema.eval_stage_metric(stage): seconds for stage, seconds in result.stage_seconds.items()},
        **fitted.metrics(),
    }
    tracker.log_metrics(metrics, step=step)
    latency = measured.latency
    tracker.set_tags({
        schema.EVAL_SPLIT_TAG: final.split,
        schema.LATENCY_DEVICE_TAG: latency.device,
        schema.LATENCY_THREADS_TAG: str(latency.threads),
        schema.LATENCY_BATCH_TAG: str(latency.batch),
    })
    tracker.log_json(result.predictions, schema.PREDICTIONS_ARTIFACT)
    tracker.log_json(result.metrics, schema.COCO_STATS_ARTIFACT)
    for name in (LAST, BEST):
        if (fitted.weights_dir / name).exists():
            tracker.log_artifact(fitted.weights_dir / name, schema.WEIGHTS_DIR)
    log.info(
        "%s: mAP50 %.3f, mAP50-95 %.3f, %.2f M params, %.2f GFLOPs, quick latency %.1f ms (%s)",
        final.split, result.metrics["map50"], result.metrics["map50_95"], metrics[schema.PARAMS_M],
        metrics[schema.GFLOPS], latency.median_ms, latency.device,
    )
    if final.best:
        best = schema.VAL_BEST
        log.info("best epoch on val: %d (mAP50 %.3f, mAP50-95 %.3f)", final.best[f"{best}/epoch"],
                 final.best[f"{best}/map50"], final.best[f"{best}/map50_95"])
    return {**{k: float(v) for k, v in result.metrics.items()}, **metrics}
