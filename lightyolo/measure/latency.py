"""Inference latency at batch 1: median and 90th percentile over timed forward passes.

Protocol (what the ablation tables report): eval mode, `torch.inference_mode`, batch 1, a
zero image of the given size, `warmup` untimed passes, then `iters` timed ones, each
synchronised on CUDA so the time covers the kernels, not their launch. The figure depends on
the machine and thread count, both recorded in the result.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass

import torch
from torch import nn

ImgSize = int | tuple[int, int]


@dataclass(frozen=True)
class LatencyResult:
    median_ms: float
    p90_ms: float
    fps: float  # 1000 / median_ms
    device: str
    threads: int  # torch.get_num_threads() during the measurement
    batch: int
    warmup: int
    iters: int
    img_size: tuple[int, int]  # (height, width)


def measure_latency(
    model: nn.Module, img_size: ImgSize, device: str | torch.device, warmup: int, iters: int
) -> LatencyResult:
    """Time `iters` batch-1 forward passes of `model` on `device` after `warmup` untimed ones.

    The model runs on `device` and is moved back to where it was and to its previous
    train/eval mode afterwards.
    """
    if warmup < 0 or iters < 1:
        raise ValueError(f"latency: expected warmup >= 0 and iters >= 1, got warmup={warmup}, iters={iters}")
    height, width = (img_size, img_size) if isinstance(img_size, int) else img_size
    device = torch.device(device)
    parameter = next(model.parameters(), None)
    home = parameter.device if parameter is not None else device
    was_training = model.training
    image = torch.zeros(1, 3, height, width, device=device)
    synchronize = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    times_ms = []
    try:
        model.to(device).eval()
        with torch.inference_mode():
            for _ in range(warmup):
                model(image)
            synchronize()
            for _ in range(iters):
                start = time.perf_counter()
                model(image)
                synchronize()
                times_ms.append((time.perf_counter() - start) * 1000)
    finally:
        model.to(home).train(was_training)
    median = statistics.median(times_ms)
    return LatencyResult(
        median_ms=median,
        p90_ms=_percentile(times_ms, 0.9),
        fps=1000 / median,
        device=str(device),
        threads=torch.get_num_threads(),
        batch=1,
        warmup=warmup,
        iters=iters,
        img_size=(height, width),
    )


def _percentile(values: list[float], fraction: float) -> float:
    """Linear-interpolated percentile (numpy's default method)."""
    ordered = sorted(values)
    position = fraction * (len(ordered) - 1)
    lower = int(position)
    upper = min(lower + 1, len(ordered) - 1)
    return ordered[lower] + (ordered[upper] - ordered[lower]) * (position - lower)
