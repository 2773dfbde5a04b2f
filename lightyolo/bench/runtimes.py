"""The runtimes the bench stage times a model in: PyTorch eager and ONNX Runtime.

A runtime turns a deployed model (eval, BatchNorm fused, NCHW contiguous) and an input
into a `Pass`: a no-argument callable that runs one forward pass and returns when its
result is ready (CUDA work is synchronised inside the pass). Each runtime knows its name
in the metric keys, its device (`cpu` / `cuda`) and its version string.

| runtime       | device | what runs                                                        |
|---------------|--------|------------------------------------------------------------------|
| `torch`       | cpu    | eager PyTorch under `torch.inference_mode`, float32              |
| `torch`       | cuda   | the same on the GPU, float32, `torch.cuda.synchronize()` per pass |
| `torch_fp16`  | cuda   | the model and input in float16, synchronised                     |
| `onnxruntime` | cpu    | the model's ONNX export (`lightyolo.export`) in ORT's CPU EP     |
| `onnxruntime` | cuda   | the same in ORT's CUDA EP (needs onnxruntime-gpu)                |

Threads: `configure_threads(n)` sets torch's intra-op threads to n (inter-op 1, where torch
still allows it); ORT sessions get intra_op_num_threads = n, inter_op_num_threads = 1,
sequential execution and no spin-waiting (a spinning ORT pool would keep burning a core
into the next, interleaved, measurement).
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import onnxruntime as ort
import torch
from torch import nn

from lightyolo.export import INPUT_NAME, export_onnx

Pass = Callable[[], None]
RUNTIME_NAMES = ("torch", "torch_fp16", "onnxruntime")
DEVICES = ("cpu", "cuda")


class Runtime(Protocol):
    """Something that can run a deployed model: `prepare` returns its timed forward pass."""

    name: str  # as in the metric key: torch, torch_fp16, onnxruntime
    device: str  # cpu or cuda

    @property
    def version(self) -> str: ...

    def prepare(self, model: nn.Module, images: torch.Tensor, onnx_path: Path | None) -> Pass: ...


class RuntimeUnavailable(Exception):
    """A runtime asked for on a device where it cannot run (one line for the CLI)."""


@dataclass(frozen=True)
class TorchRuntime:
    """Eager PyTorch; `half` puts model and input in float16 (CUDA only)."""

    device: str = "cpu"
    half: bool = False

    @property
    def name(self) -> str:
        return "torch_fp16" if self.half else "torch"

    @property
    def version(self) -> str:
        return torch.__version__

    def prepare(self, model: nn.Module, images: torch.Tensor, onnx_path: Path | None) -> Pass:
        dtype = torch.float16 if self.half else torch.float32
        model = model.to(self.device, dtype=dtype, memory_format=torch.contiguous_format).eval()
        images = images.to(self.device, dtype=dtype).contiguous()
        synchronize = torch.cuda.synchronize if self.device == "cuda" else (lambda: None)

        def forward_pass() -> None:
            with torch.inference_mode():
                model(images)
            synchronize()

        return forward_pass


@dataclass(frozen=True)
class OnnxRuntime:
    """ONNX Runtime with the CPU or CUDA execution provider, on the model's ONNX export."""

    device: str = "cpu"
    threads: int = 1
    name: str = "onnxruntime"

    @property
    def version(self) -> str:
        return ort.__version__

    @property
    def provider(self) -> str:
        return "CUDAExecutionProvider" if self.device == "cuda" else "CPUExecutionProvider"

    def prepare(self, model: nn.Module, images: torch.Tensor, onnx_path: Path | None) -> Pass:
        if onnx_path is None:  # no export given: make one of this model at this size
            directory = Path(tempfile.mkdtemp(prefix="lightyolo-bench-"))
            onnx_path = export_onnx(model, directory / "model.onnx", images.shape[-1])
        options = ort.SessionOptions()
        options.intra_op_num_threads = self.threads
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        session = ort.InferenceSession(str(onnx_path), options, providers=[self.provider])
        feed = {INPUT_NAME: images.detach().to("cpu", torch.float32).contiguous().numpy()}
        if self.device == "cuda":  # keep the input on the GPU, as the torch runtime does
            binding = session.io_binding()
            binding.bind_ortvalue_input(INPUT_NAME, ort.OrtValue.ortvalue_from_numpy(feed[INPUT_NAME], "cuda", 0))
            for output in session.get_outputs():
                binding.bind_output(output.name, "cuda")

            def forward_pass() -> None:
                session.run_with_iobinding(binding)  # returns once the outputs are written

            return forward_pass

        def forward_pass() -> None:
            session.run(None, feed)

        return forward_pass


def configure_threads(threads: int) -> None:
    """Fix torch's intra-op threads (and inter-op 1 where torch still allows setting it)."""
    if threads < 1:
        raise ValueError(f"threads={threads}: expected >= 1")
    torch.set_num_threads(threads)
    try:
        torch.set_num_interop_threads(1)
    except RuntimeError:  # only settable before the first inter-op work of the process
        pass


def build_runtimes(names: list[str], device: str, threads: int) -> list[Runtime]:
    """The runtimes `names` on `device`; RuntimeUnavailable for one that cannot run there."""
    if device not in DEVICES:
        raise RuntimeUnavailable(f"device={device!r}: expected one of {', '.join(DEVICES)}")
    if device == "cuda" and not torch.cuda.is_available():
        raise RuntimeUnavailable("device=cuda but torch sees no CUDA GPU (use device=cpu)")
    runtimes: list[Runtime] = []
    for name in names:
        if name not in RUNTIME_NAMES:
            raise RuntimeUnavailable(f"runtimes: unknown runtime {name!r} (valid: {', '.join(RUNTIME_NAMES)})")
        if name == "torch":
            runtimes.append(TorchRuntime(device))
        elif name == "torch_fp16":
            if device != "cuda":
                raise RuntimeUnavailable("runtimes: torch_fp16 runs on device=cuda only")
            runtimes.append(TorchRuntime(device, half=True))
        else:
            wanted = OnnxRuntime(device, threads)
            if wanted.provider not in ort.get_available_providers():
                raise RuntimeUnavailable(
                    f"runtimes: onnxruntime on {device} needs {wanted.provider}, not in this "
                    f"onnxruntime {ort.__version__} (available: {', '.join(ort.get_available_providers())})"
                )
            runtimes.append(wanted)
    return runtimes


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
