"""Eager PyTorch: the fused detector under `torch.inference_mode`, float32, or float16 on CUDA."""

from __future__ import annotations

import copy

import numpy as np
import torch

from lightyolo.deploy.runtime import Exported, Pass, Session, check_precision


class TorchSession(Session):
    def __init__(self, model: torch.nn.Module, device: str, dtype: torch.dtype) -> None:
        self.model, self.device, self.dtype = model, device, dtype
        self.description = {"dtype": str(dtype).removeprefix("torch.")}

    def _forward(self, images: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode():
            return self.model(images)[0]

    def run(self, images: np.ndarray) -> np.ndarray:
        inputs = torch.from_numpy(np.ascontiguousarray(images)).to(self.device, self.dtype)
        return self._forward(inputs).float().cpu().numpy()

    def timed_pass(self, images: np.ndarray) -> Pass:
        # The input stays on the device, as a deployed model's would; CUDA work is synchronised.
        inputs = torch.from_numpy(np.ascontiguousarray(images)).to(self.device, self.dtype)
        synchronize = torch.cuda.synchronize if self.device == "cuda" else (lambda: None)

        def forward_pass() -> None:
            self._forward(inputs)
            synchronize()

        return forward_pass


class TorchRuntime:
    """`torch`: fp32 on cpu/cuda, fp16 on cuda."""

    name = "torch"

    def __init__(self, device: str = "cpu", threads: int = 1) -> None:
        self.device, self.threads = device, threads

    @property
    def version(self) -> str:
        return torch.__version__

    def load(self, exported: Exported, precision: str) -> Session:
        check_precision(self.name, precision, ("fp32", "fp16") if self.device == "cuda" else ("fp32",))
        dtype = torch.float16 if precision == "fp16" else torch.float32
        model = copy.deepcopy(exported.model).to(self.device, dtype=dtype, memory_format=torch.contiguous_format)
        return TorchSession(model.eval(), self.device, dtype)
