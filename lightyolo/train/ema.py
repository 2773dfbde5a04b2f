"""Exponential moving average of weights (ultralytics/yolov5 v7.0 `torch_utils.py::ModelEMA`).

The EMA copy is what YOLOv5 evaluates and saves. Its decay ramps up with the number of
updates, decay · (1 − exp(−updates / tau)), so early, noisy weights are forgotten quickly.
Floating-point entries of the state dict (weights and BatchNorm running statistics) are
averaged; integer ones (`num_batches_tracked`) are copied. The average is two fused
`torch._foreach_mul_` / `_foreach_add_` calls over all floating tensors instead of a Python
loop of two kernels per tensor.
"""

from __future__ import annotations

import math
from copy import deepcopy
from typing import Any

import torch
from torch import nn


def _unwrap(model: nn.Module) -> nn.Module:
    """The bare model inside DataParallel / DistributedDataParallel."""
    wrappers = (nn.DataParallel, nn.parallel.DistributedDataParallel)
    return model.module if isinstance(model, wrappers) else model


class ModelEMA:
    """YOLOv5's ModelEMA: `ema` is an eval-mode copy of the model without gradients."""

    def __init__(
        self, model: nn.Module, decay: float = 0.9999, tau: float = 2000, updates: int = 0
    ) -> None:
        self.ema = deepcopy(_unwrap(model)).eval()
        for param in self.ema.parameters():
            param.requires_grad_(False)
        self.decay = decay
        self.tau = tau
        self.updates = updates

    def current_decay(self) -> float:
        """Decay applied by the latest update (0 before any)."""
        return self.decay * (1 - math.exp(-self.updates / self.tau))

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        """Move the average towards `model`'s current weights and buffers."""
        self.updates += 1
        decay = self.current_decay()
        current = _unwrap(model).state_dict()
        averaged, sources = [], []
        for key, tensor in self.ema.state_dict().items():
            source = current[key].detach()
            if tensor.dtype.is_floating_point:
                averaged.append(tensor)
                sources.append(source.to(tensor.dtype))
            else:
                tensor.copy_(source)
        if averaged:
            torch._foreach_mul_(averaged, decay)
            torch._foreach_add_(averaged, sources, alpha=1 - decay)

    def state_dict(self) -> dict[str, Any]:
        """The averaged weights and the update count, enough to resume exactly."""
        return {"ema": self.ema.state_dict(), "updates": self.updates}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what `state_dict` returned."""
        missing = {"ema", "updates"} - state.keys()
        if missing:
            raise ValueError(f"ModelEMA.load_state_dict: state lacks keys {sorted(missing)}")
        self.ema.load_state_dict(state["ema"])
        self.updates = int(state["updates"])
