"""The training recipe as typed settings: the `train` config group, read once.

The loop and its helpers take a `TrainSettings`, never a raw config, so each key they use
is named (and typed) here.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any


@dataclass(frozen=True)
class LossGains:
    """`train.loss`: YOLOv5's loss gains and anchor-matching threshold, and the keys only a
    head's own loss reads (conf/head/v8.yaml: DFL gain, task-aligned assigner's top-k, α, β;
    None where the config has none)."""

    box: float
    obj: float
    cls: float
    anchor_t: float
    dfl: float | None = None
    topk: int | None = None
    alpha: float | None = None
    beta: float | None = None


@dataclass(frozen=True)
class TrainSettings:
    """`train`: what the loop computes (augmentation and data loading are the pipeline's)."""

    epochs: int
    batch_size: int
    nominal_batch_size: int
    img_size: int
    lr0: float
    lrf: float
    schedule: str
    momentum: float
    weight_decay: float
    warmup_epochs: float
    warmup_min_iters: int
    warmup_momentum: float
    warmup_bias_lr: float
    grad_clip: float
    amp: bool
    cpu_amp: bool
    ema_decay: float
    eval_interval: int
    loss: LossGains

    @classmethod
    def from_config(cls, train: Mapping[str, Any]) -> TrainSettings:
        """The settings from the `train` group (extra keys, e.g. `augment`, are ignored)."""
        values = {f.name: train[f.name] for f in fields(cls) if f.name != "loss"}
        loss = train["loss"]
        return cls(**values, loss=LossGains(**{f.name: loss[f.name] for f in fields(LossGains) if f.name in loss}))

    @property
    def accumulate(self) -> int:
        """Batches per optimizer step, so that a step sees about `nominal_batch_size` images."""
        return max(round(self.nominal_batch_size / self.batch_size), 1)
