"""The one protocol every deployment runtime follows, and what it is given.

A runtime (`Runtime`) loads a cell's export (`Exported`: the fused PyTorch detector and, made
on first use, its ONNX file) at one precision and returns a `Session`, which runs a batch:
float32 (B, 3, H, W) RGB in [0, 1] → the decoded head output (B, N, 5 + nc), float32, as
`lightyolo.export` documents it. A runtime says its name, device and version; a
(runtime, precision) pair it cannot run, or an export it cannot take, raises `Unsupported`
with one line of reason (the bench stage records that as an "unsupported" cell).

Precisions: `fp32`; `fp16` where the runtime computes in it; `int8`: post-training
quantization calibrated on `Exported.calibration()` (training images only, calibration.py).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from torch import nn

from lightyolo.export import export_onnx

PRECISIONS = ("fp32", "fp16", "int8")
Pass = Callable[[], None]


class Unsupported(Exception):
    """This runtime cannot run this export at this precision (the message says why, one line)."""


class RuntimeUnavailable(Exception):
    """A runtime asked for that is unknown, not installed, or cannot run on the device (one line)."""


@dataclass(frozen=True)
class Calibration:
    """The images an INT8 model is calibrated on, and where they came from.

    `batches`: float32 (1, 3, img, img) arrays, letterboxed as the evaluation does;
    `paths`: the image files, in order; `description`: what is recorded with the figure."""

    batches: list[np.ndarray]
    paths: tuple[str, ...]
    description: dict[str, Any]


class Exported:
    """A cell as deployed: `model` (eval, BatchNorm fused; the torch runtime runs it), its input
    size (`img` square, or (H, W) for a rectangular evaluation batch), batch, a scratch
    `workdir` for conversions, and its ONNX file, exported on first use. `calibration(shape)`
    makes the INT8 calibration set at the input's shape when first asked (None: no training data)."""

    def __init__(
        self, model: nn.Module, img: int | tuple[int, int], batch: int, workdir: Path,
        calibration: Callable[[tuple[int, int]], Calibration] | None = None,
    ) -> None:
        self.model, self.img, self.batch, self.workdir = model, img, batch, workdir
        self._calibration = calibration

    @property
    def shape(self) -> tuple[int, int]:
        """(H, W) of the input."""
        return (self.img, self.img) if isinstance(self.img, int) else tuple(self.img)

    @functools.cached_property
    def onnx(self) -> Path:
        return export_onnx(self.model, self.workdir / "model.onnx", self.img, dynamic_batch=self.batch > 1)

    @property
    def has_onnx(self) -> bool:
        return "onnx" in self.__dict__

    @functools.cached_property
    def calibration(self) -> Calibration:
        if self._calibration is None:
            raise Unsupported("int8 needs calibration images from the cell's training split; none were given")
        return self._calibration(self.shape)


class Session:
    """A loaded model. `run` is the one method a runtime must give; `timed_pass` is what the
    bench stage times (by default `run` on a fixed input; a runtime may stage the input once,
    as the torch runtime does on CUDA); `description` goes into the method's tag."""

    description: dict[str, Any] = {}

    def run(self, images: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def timed_pass(self, images: np.ndarray) -> Pass:
        images = np.ascontiguousarray(images, dtype=np.float32)
        return lambda: self.run(images)


class Runtime(Protocol):
    """What the registry builds, as `factory(device=..., threads=...)`."""

    name: str  # in metric keys: bench/<name>[_<precision>]_<device>_..., deploy/<name>_<precision>/...
    device: str  # cpu or cuda

    @property
    def version(self) -> str: ...

    def load(self, exported: Exported, precision: str) -> Session: ...


def deployment_key(runtime: str, precision: str) -> str:
    """`openvino_int8`; fp32 keeps the bare runtime name, as the bench stage's keys always had."""
    return runtime if precision == "fp32" else f"{runtime}_{precision}"


def check_precision(runtime: str, precision: str, supported: tuple[str, ...]) -> None:
    if precision not in PRECISIONS:
        raise RuntimeUnavailable(f"precisions: unknown precision {precision!r} (valid: {', '.join(PRECISIONS)})")
    if precision not in supported:
        raise Unsupported(f"{runtime} does not run {precision} here (it runs {', '.join(supported)})")
