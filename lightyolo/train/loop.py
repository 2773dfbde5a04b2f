"""The training loop: YOLOv5's recipe (SGD + warmup + linear/cosine decay, gradient
accumulation to a nominal batch that ramps up from 1 during warmup, EMA, AMP on CUDA and
opt-in bf16 on CPU, gradient clipping), with a checkpoint every epoch that is enough to
resume exactly where it stopped.

`train` is the flow: `setup_training` (loss, optimizer, schedule, EMA, scaler, resume state)
→ per epoch `train_one_epoch`, `validate_epoch` (evaluates the EMA and keeps the best epoch
in `best.pt`) and `save_last` (`last.pt`).
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader
from tqdm import tqdm

from lightyolo.train.checkpoint import BEST, LAST, capture_rng_state, restore_rng_state, save_checkpoint
from lightyolo.train.ema import ModelEMA
from lightyolo.train.losses import DetectionLoss, build_loss
from lightyolo.train.interrupt import GracefulStop
from lightyolo.train.optim import build_optimizer, lr_lambda, warmup_iterations, warmup_step
from lightyolo.train.precision import autocast_dtype, cpu_has_native_bf16
from lightyolo.train.settings import TrainSettings

log = logging.getLogger(__name__)

Evaluate = Callable[[nn.Module], tuple[dict[str, float], Any]]

POSTFIX_EVERY = 10  # steps between progress-bar loss updates (each one is a host sync)


class NonFiniteLossError(RuntimeError):
    """Training produced a NaN/inf loss; continuing would only train on garbage."""


@dataclass
class EpochReport:
    epoch: int
    losses: dict[str, float]  # mean of each part of the loss over the epoch (box/obj/cls for YOLOv5's)
    lr: float
    images: int
    seconds: float
    val: dict[str, float] | None = None


@dataclass
class TrainResult:
    epochs_run: int
    seconds: float
    images: int
    best_fitness: float
    best_eval: Any = None  # what `evaluate` returned at the best epoch, if in this process
    best_epoch: int | None = None  # 0-based, when the best epoch was in this process
    last_eval: Any = None  # what `evaluate` returned at the last evaluated epoch of this process
    ema: nn.Module | None = None
    history: list[EpochReport] = field(default_factory=list)

    @property
    def images_per_s(self) -> float:
        return self.images / self.seconds if self.seconds > 0 else 0.0


@dataclass
class TrainState:
    """What the loop updates: the model and everything that steps with it."""

    model: nn.Module
    loss_fn: DetectionLoss
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LambdaLR
    lr_factor: Callable[[int], float]
    ema: ModelEMA
    scaler: torch.amp.GradScaler
    autocast_dtype: torch.dtype | None  # None: fp32 (see precision.py)
    start_epoch: int = 0
    best_fitness: float = -1.0
    last_step: int = -1  # the iteration of the last optimizer step


def fitness(metrics: dict[str, float]) -> float:
    """YOLOv5's model-selection score: 0.1 · mAP50 + 0.9 · mAP50-95."""
    return 0.1 * metrics["map50"] + 0.9 * metrics["map50_95"]


def train(
    model: nn.Module,
    loader: DataLoader,
    *,
    settings: TrainSettings,
    device: torch.device,
    seed: int,
    checkpoint_dir: Path,
    evaluate: Evaluate,
    on_epoch_end: Callable[[EpochReport], None],
    on_checkpoint: Callable[[], None] | None = None,
    resume: dict[str, Any] | None = None,
    extra_state: dict[str, Any] | None = None,
) -> TrainResult:
    """Train `model` for `settings.epochs` and return the result.

    `evaluate(ema_model)` returns (metrics with map50/map50_95, anything to keep for the
    best epoch). `resume` is a loaded `last.pt`; `extra_state` is stored in every
    checkpoint (e.g. the MLflow run id) for whoever resumes it; `on_checkpoint()` is called
    after each epoch's `last.pt` is written (the pipeline copies it to the store).
    """
    state = setup_training(model, settings, device, resume)
    warmup_iters = warmup_iterations(len(loader), settings.warmup_epochs, settings.warmup_min_iters)
    result = TrainResult(0, 0.0, 0, state.best_fitness)
    with GracefulStop() as stop:  # SIGINT / SIGTERM: TrainingInterrupted at the next step
        _train_epochs(state, loader, settings, device, seed, warmup_iters, checkpoint_dir, evaluate,
                      on_epoch_end, on_checkpoint, extra_state, result, stop)
    result.ema = state.ema.ema
    return result


def _train_epochs(
    state: TrainState, loader: DataLoader, settings: TrainSettings, device: torch.device, seed: int,
    warmup_iters: int, checkpoint_dir: Path, evaluate: Evaluate, on_epoch_end: Callable[[EpochReport], None],
    on_checkpoint: Callable[[], None] | None, extra_state: dict[str, Any] | None, result: TrainResult,
    stop: GracefulStop,
) -> None:
    for epoch in range(state.start_epoch, settings.epochs):
        report = train_one_epoch(state, loader, epoch, settings, device, seed, warmup_iters, stop.check)
        result.epochs_run += 1
        result.seconds += report.seconds
        result.images += report.images
        if epoch + 1 == settings.epochs or (epoch + 1) % settings.eval_interval == 0:
            validate_epoch(state, report, evaluate, result, checkpoint_dir / BEST)
        result.history.append(report)
        # Logged before last.pt is written: a run cut in between repeats this epoch on
        # resume (one step logged twice) rather than losing it.
        on_epoch_end(report)
        save_last(state, epoch, result.best_fitness, checkpoint_dir / LAST, extra_state)
        if on_checkpoint is not None:
            on_checkpoint()
        _log_epoch(report, settings.epochs)
        if epoch + 1 < settings.epochs:
            stop.check(epoch + 1)


def setup_training(
    model: nn.Module, settings: TrainSettings, device: torch.device, resume: dict[str, Any] | None
) -> TrainState:
    """Loss, optimizer, schedule, EMA and scaler for `model`, restored from `resume` if given."""
    # channels_last: ~10 % faster convolutions forward and backward on CPU (and with AMP on GPU).
    model.to(device, memory_format=torch.channels_last)
    loss_fn = build_loss(model.head, settings)  # the head names its loss (train/losses.py)
    # YOLOv5 scales weight decay with the images per optimizer step.
    weight_decay = (
        settings.weight_decay * settings.batch_size * settings.accumulate / settings.nominal_batch_size
    )
    optimizer = build_optimizer(
        model, lr0=settings.lr0, momentum=settings.momentum, weight_decay=weight_decay
    )
    lr_factor = lr_lambda(settings.epochs, settings.lrf, settings.schedule)
    dtype = autocast_dtype(device.type, amp=settings.amp, cpu_amp=settings.cpu_amp,
                           native_bf16=device.type == "cpu" and cpu_has_native_bf16())
    state = TrainState(
        model=model,
        loss_fn=loss_fn,
        optimizer=optimizer,
        scheduler=torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda=lr_factor),
        lr_factor=lr_factor,
        ema=ModelEMA(model, decay=settings.ema_decay),
        scaler=torch.amp.GradScaler("cuda", enabled=dtype == torch.float16),  # bf16 needs no scaling
        autocast_dtype=dtype,
    )
    if resume is not None:
        restore_state(state, resume)
        log.info("resuming at epoch %d of %d", state.start_epoch, settings.epochs)
    return state


def restore_state(state: TrainState, checkpoint: dict[str, Any]) -> None:
    """Load a `last.pt` into the state: weights, EMA, optimizer, schedule, scaler, RNGs."""
    state.model.load_state_dict(checkpoint["model"])
    state.ema.load_state_dict(checkpoint["ema"])
    state.optimizer.load_state_dict(checkpoint["optimizer"])
    state.scheduler.load_state_dict(checkpoint["scheduler"])
    state.scaler.load_state_dict(checkpoint["scaler"])
    restore_rng_state(checkpoint["rng"])
    state.start_epoch, state.best_fitness = checkpoint["epoch"] + 1, checkpoint["best_fitness"]


def train_one_epoch(
    state: TrainState,
    loader: DataLoader,
    epoch: int,
    settings: TrainSettings,
    device: torch.device,
    seed: int,
    warmup_iters: int,
    before_step: Callable[[int], None] | None = None,
) -> EpochReport:
    """One pass over `loader`: warmup, forward/backward, accumulated steps, EMA, lr schedule.
    `before_step(epoch)` runs before each batch (a signal stops training there)."""
    state.model.train()
    if loader.generator is not None:  # the epoch, not history, decides the order
        loader.generator.manual_seed(seed * 100_003 + epoch)
    batches = len(loader)
    sums = torch.zeros(3, device=device)  # summed on the device: no host sync per step
    images, t0, i = 0, time.perf_counter(), 0
    bar = tqdm(
        loader, desc=f"epoch {epoch + 1}/{settings.epochs}", total=batches,
        disable=not sys.stderr.isatty(), leave=False,
    )
    state.optimizer.zero_grad(set_to_none=True)
    for i, (imgs, targets, _) in enumerate(bar):
        if before_step is not None:
            before_step(epoch)
        step = i + batches * epoch
        if step <= warmup_iters:
            warmup_step(
                state.optimizer, iteration=step, warmup_iters=warmup_iters, epoch=epoch,
                lr_factor=state.lr_factor, lr0=settings.lr0, momentum=settings.momentum,
                warmup_momentum=settings.warmup_momentum, warmup_bias_lr=settings.warmup_bias_lr,
            )
        imgs = imgs.to(device, non_blocking=True, memory_format=torch.channels_last).float() / 255
        accumulate = accumulate_at(step, warmup_iters, settings.nominal_batch_size, settings.batch_size)
        targets = targets.to(device, non_blocking=True)
        items = _train_step(state, imgs, targets, step, settings, accumulate, where=(epoch, i))
        sums += items
        images += imgs.shape[0]
        if not bar.disable and i % POSTFIX_EVERY == 0:  # formatting the losses syncs with the device
            parts = {_short(name): f"{value:.4f}" for name, value in zip(state.loss_fn.item_names, items.tolist())}
            bar.set_postfix(**parts, img_s=f"{images / (time.perf_counter() - t0):.1f}")
    state.scheduler.step()
    losses = dict(zip(state.loss_fn.item_names, (sums / max(i + 1, 1)).tolist()))
    lr = state.optimizer.param_groups[0]["lr"]
    return EpochReport(epoch, losses, lr, images, time.perf_counter() - t0)


def accumulate_at(step: int, warmup_iters: int, nominal_batch_size: int, batch_size: int) -> int:
    """Batches per optimizer step at iteration `step`, as YOLOv5's train.py ramps it: from 1
    at the start of warmup to nominal/batch at its end (rounded half to even, like numpy's
    `round`), then that value (`TrainSettings.accumulate`) for the rest of training."""
    full = nominal_batch_size / batch_size
    if step > warmup_iters:
        return max(1, round(full))
    return max(1, round(float(np.interp(step, [0, warmup_iters], [1, full]))))


def _train_step(
    state: TrainState,
    imgs: torch.Tensor,
    targets: torch.Tensor,
    step: int,
    settings: TrainSettings,
    accumulate: int,
    where: tuple[int, int],
) -> torch.Tensor:
    """Forward and backward one batch; an optimizer (and EMA) step once `accumulate` batches
    have gathered since the last one.

    Returns the batch's box/obj/cls losses (detached, on the device)."""
    with torch.autocast(imgs.device.type, dtype=state.autocast_dtype, enabled=state.autocast_dtype is not None):
        loss, items = state.loss_fn(state.model(imgs), targets)
    if not torch.isfinite(loss):
        names = "/".join(_short(name) for name in state.loss_fn.item_names)
        raise NonFiniteLossError(
            f"loss became {loss.item()} at epoch {where[0] + 1}, batch {where[1] + 1} "
            f"({names} = {items.tolist()}); lower train.lr0 or check the labels"
        )
    state.scaler.scale(loss).backward()
    if step - state.last_step >= accumulate:
        state.scaler.unscale_(state.optimizer)
        nn.utils.clip_grad_norm_(state.model.parameters(), max_norm=settings.grad_clip)
        state.scaler.step(state.optimizer)
        state.scaler.update()
        state.optimizer.zero_grad(set_to_none=True)
        state.ema.update(state.model)
        state.last_step = step
    return items.detach()


def validate_epoch(
    state: TrainState, report: EpochReport, evaluate: Evaluate, result: TrainResult, best_path: Path
) -> None:
    """Evaluate the EMA into `report.val`; the best epoch so far (by `fitness`) goes to `best_path`.

    This is where the best epoch is decided (on val); what is reported is the pipeline's
    choice (the test split with these weights, or the last epoch's evaluation)."""
    report.val, kept = evaluate(state.ema.ema)
    result.last_eval = kept
    score = fitness(report.val)
    if score > result.best_fitness:
        result.best_fitness, result.best_eval, result.best_epoch = score, kept, report.epoch
        save_checkpoint(
            {"model": state.ema.ema.state_dict(), "epoch": report.epoch, "fitness": score}, best_path
        )


def save_last(
    state: TrainState,
    epoch: int,
    best_fitness: float,
    path: Path,
    extra_state: dict[str, Any] | None = None,
) -> None:
    """`last.pt`: everything `restore_state` needs to continue after `epoch`."""
    save_checkpoint(
        {
            "model": state.model.state_dict(),
            "ema": state.ema.state_dict(),
            "optimizer": state.optimizer.state_dict(),
            "scheduler": state.scheduler.state_dict(),
            "scaler": state.scaler.state_dict(),
            "epoch": epoch,
            "best_fitness": best_fitness,
            "rng": capture_rng_state(),
            **(extra_state or {}),
        },
        path,
    )


def _short(item_name: str) -> str:
    """`box_loss` → `box`: the name a loss part goes by in progress lines."""
    return item_name.removesuffix("_loss")


def _log_epoch(report: EpochReport, epochs: int) -> None:
    val = report.val
    parts = " ".join(f"{_short(name)} {value:.4f}" for name, value in report.losses.items())
    log.info(
        "epoch %d/%d: %s, %.1f img/s%s",
        report.epoch + 1, epochs, parts, report.images / report.seconds,
        f", val mAP50 {val['map50']:.3f} mAP50-95 {val['map50_95']:.3f}" if val else "",
    )
