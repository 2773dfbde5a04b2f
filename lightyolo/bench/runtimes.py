"""The deployments the bench stage times: (runtime, precision) pairs from the runtime registry.

Runtimes are plugins (`lightyolo/deploy/registry.py`): the built-ins `torch`, `onnxruntime`,
`openvino`, `ncnn` (and `onnxruntime_trt` on CUDA builds), plus any package's
`lightyolo.runtimes` entry points. Each loads a cell's export at a precision (fp32, fp16,
int8) and gives the pass the stage times (`Session.timed_pass`). The name `torch_fp16` is
kept for `torch` at fp16 (CUDA only), as before the precisions were a factor.

| runtime       | device | what runs                                                          |
|---------------|--------|--------------------------------------------------------------------|
| `torch`       | cpu    | eager PyTorch under `torch.inference_mode`, float32                |
| `torch`       | cuda   | the same on the GPU (fp32, or fp16), synchronised per pass          |
| `onnxruntime` | cpu    | the ONNX export in ORT's CPU EP (fp32, int8 by static quantization) |
| `onnxruntime` | cuda   | the same in ORT's CUDA EP (needs onnxruntime-gpu)                   |
| `openvino`    | cpu    | the ONNX export in OpenVINO's CPU plugin (fp32, fp16, int8 by NNCF) |
| `ncnn`        | cpu    | the ONNX export converted by pnnx, in ncnn (fp32)                   |

Threads: `configure_threads(n)` sets torch's intra-op threads to n (inter-op 1, where torch
still allows it); every other runtime is given n threads by its own setting.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from lightyolo.deploy.registry import DEVICES, build_runtime
from lightyolo.deploy.runtime import (  # noqa: F401 (the bench stage's names for them)
    PRECISIONS, Pass, Runtime, RuntimeUnavailable, deployment_key,
)

ALIASES = {"torch_fp16": ("torch", "fp16")}  # the runtime name before precisions were a factor


@dataclass(frozen=True)
class Deployment:
    """A runtime at a precision; `key` names it in metric keys (fp32: the bare runtime name)."""

    runtime: Runtime
    precision: str

    @property
    def key(self) -> str:
        return deployment_key(self.runtime.name, self.precision)


def build_runtimes(names: list[str], device: str, threads: int) -> list[Runtime]:
    """The runtimes `names` on `device`; RuntimeUnavailable for one that cannot run there."""
    return [d.runtime for d in build_deployments(names, ("fp32",), device, threads)]


def build_deployments(
    names: list[str] | tuple[str, ...], precisions: list[str] | tuple[str, ...], device: str, threads: int
) -> list[Deployment]:
    """Every runtime of `names` at every precision of `precisions` (an alias brings its own
    precision); RuntimeUnavailable (one line) for an unknown name or precision, a runtime whose
    package is missing, or a device that cannot run it. A pair the runtime does not support is
    not refused here: the stage records it as unsupported."""
    if device not in DEVICES:
        raise RuntimeUnavailable(f"device={device!r}: expected one of {', '.join(DEVICES)}")
    if device == "cuda" and not torch.cuda.is_available():
        raise RuntimeUnavailable("device=cuda but torch sees no CUDA GPU (use device=cpu)")
    unknown = [p for p in precisions if p not in PRECISIONS]
    if unknown:
        raise RuntimeUnavailable(f"precisions: unknown precision {unknown[0]!r} (valid: {', '.join(PRECISIONS)})")
    deployments: list[Deployment] = []
    for name in names:
        if name in ALIASES:
            base, precision = ALIASES[name]
            if device != "cuda":
                raise RuntimeUnavailable(f"runtimes: {name} runs on device=cuda only")
            deployments.append(Deployment(build_runtime(base, device, threads), precision))
            continue
        runtime = build_runtime(name, device, threads)
        available = getattr(runtime, "available", None)
        reason = available() if available is not None else None
        if reason:
            raise RuntimeUnavailable(f"runtimes: {reason}")
        deployments += [Deployment(runtime, precision) for precision in precisions]
    return deployments


def configure_threads(threads: int) -> None:
    """Fix torch's intra-op threads (and inter-op 1 where torch still allows setting it)."""
    if threads < 1:
        raise ValueError(f"threads={threads}: expected >= 1")
    torch.set_num_threads(threads)
    try:
        torch.set_num_interop_threads(1)
    except RuntimeError:  # only settable before the first inter-op work of the process
        pass


def device_name(device: str) -> str:
    """The CPU model from /proc/cpuinfo ("model name"), or the GPU's name."""
    if device == "cuda":
        return torch.cuda.get_device_name()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.partition(":")[2].strip()
    except OSError:
        pass
    import platform

    return platform.processor() or platform.machine()
