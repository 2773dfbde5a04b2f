"""YOLOv5's optimiser, learning-rate schedule and warmup (ultralytics/yolov5 v7.0 `train.py`).

- `build_optimizer`: SGD with Nesterov momentum (`foreach` kernels) and three parameter groups, in this order:
  group 0 = every bias (no weight decay; the *bias group* that warmup starts high),
  group 1 = all other weights (weight decay), group 2 = normalisation-layer weights (no decay).
- `lr_lambda`: the per-epoch multiplier of lr0, YOLOv5's `one_cycle` cosine (1 → lrf) or its
  linear schedule, for `torch.optim.lr_scheduler.LambdaLR`.
- `warmup_step` / `warmup_iterations`: the first max(3 epochs, 100) iterations ramp the bias
  group's lr down from 0.1 and the others' up from 0 to lr0 · lf(epoch), and momentum from
  0.8 up to its final value.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import torch
from torch import nn

SCHEDULES = ("cosine", "linear")
BIAS_GROUP = 0

# Every normalisation layer torch ships (BatchNorm*, SyncBatchNorm, GroupNorm, LayerNorm,
# InstanceNorm*, ...): their scale parameters are not decayed, as YOLOv5 does for BatchNorm.
_NORM_LAYERS = tuple(
    layer
    for name, layer in vars(nn).items()
    if isinstance(layer, type) and issubclass(layer, nn.Module) and "Norm" in name
)


def build_optimizer(
    model: nn.Module, *, lr0: float = 0.01, momentum: float = 0.937, weight_decay: float = 5e-4
) -> torch.optim.SGD:
    """Nesterov SGD with groups [biases, decayed weights, norm weights] (module docstring)."""
    biases: list[nn.Parameter] = []
    decayed: list[nn.Parameter] = []
    norm_weights: list[nn.Parameter] = []
    for module in model.modules():
        for name, param in module.named_parameters(recurse=False):
            if name == "bias":
                biases.append(param)
            elif name == "weight" and isinstance(module, _NORM_LAYERS):
                norm_weights.append(param)
            else:
                decayed.append(param)
    # foreach: one fused kernel per group and step instead of a Python loop over parameters
    optimizer = torch.optim.SGD(biases, lr=lr0, momentum=momentum, nesterov=True, foreach=True)
    optimizer.add_param_group({"params": decayed, "weight_decay": weight_decay})
    optimizer.add_param_group({"params": norm_weights, "weight_decay": 0.0})
    return optimizer


def lr_lambda(epochs: int, lrf: float = 0.01, schedule: str = "cosine") -> Callable[[int], float]:
    """Multiplier of lr0 at an epoch: 1 at epoch 0, `lrf` at epoch `epochs`."""
    if epochs < 1:
        raise ValueError(f"lr_lambda: epochs must be >= 1, got {epochs}")
    if schedule == "cosine":
        return lambda epoch: ((1 - math.cos(epoch * math.pi / epochs)) / 2) * (lrf - 1) + 1
    if schedule == "linear":
        return lambda epoch: (1 - epoch / epochs) * (1.0 - lrf) + lrf
    raise ValueError(f"lr_lambda: unknown schedule {schedule!r}, expected one of {SCHEDULES}")


def warmup_iterations(
    batches_per_epoch: int, warmup_epochs: float = 3.0, min_iters: int = 100
) -> int:
    """Number of warmup iterations: `warmup_epochs` epochs, but at least `min_iters`."""
    return max(round(warmup_epochs * batches_per_epoch), min_iters)


def warmup_step(
    optimizer: torch.optim.Optimizer,
    *,
    iteration: int,
    warmup_iters: int,
    epoch: int,
    lr_factor: Callable[[int], float],
    lr0: float,
    momentum: float,
    warmup_momentum: float = 0.8,
    warmup_bias_lr: float = 0.1,
) -> None:
    """Set lr and momentum of every group for a warmup iteration; a no-op after warmup.

    `iteration` counts batches since the start of training. The bias group (index
    `BIAS_GROUP` = 0) starts at `warmup_bias_lr`, the others at 0; all reach lr0 · lr_factor
    (epoch) at `warmup_iters`, while momentum rises from `warmup_momentum` to `momentum`.
    """
    if iteration > warmup_iters:
        return
    span = [0, warmup_iters]
    target_lr = lr0 * lr_factor(epoch)
    for index, group in enumerate(optimizer.param_groups):
        start_lr = warmup_bias_lr if index == BIAS_GROUP else 0.0
        group["lr"] = float(np.interp(iteration, span, [start_lr, target_lr]))
        if "momentum" in group:
            group["momentum"] = float(np.interp(iteration, span, [warmup_momentum, momentum]))
