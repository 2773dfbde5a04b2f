"""ExecuTorch with the XNNPACK delegate (PyTorch's on-device runtime, the TFLite-family target
of the Android/iOS world): the fused detector exported with `torch.export`, lowered by
`to_edge_transform_and_lower(..., partitioner=[XnnpackPartitioner()])` into a `.pte` program,
and run by `executorch.runtime.Runtime` on the CPU. fp32 only here (XNNPACK INT8 needs the
PT2E quantization flow, not wired). An optional extra (`pip install lightyolo[executorch]`):
it pulls coremltools, torchao and tokenizer packages beside torch.
"""

from __future__ import annotations

from importlib.metadata import version

import numpy as np
import torch
from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
from executorch.exir import to_edge_transform_and_lower
from executorch.extension.pybindings.portable_lib import _unsafe_reset_threadpool
from executorch.runtime import Runtime

from lightyolo.deploy.runtime import Exported, Session, Unsupported, check_precision


class _Decoded(torch.nn.Module):
    def __init__(self, detector: torch.nn.Module) -> None:
        super().__init__()
        self.detector = detector

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.detector(images)[0]


class ExecuTorchSession(Session):
    def __init__(self, method) -> None:
        self.method = method
        self.description = {"delegate": "XNNPACK (executorch.backends.xnnpack)", "program": ".pte"}

    def run(self, images: np.ndarray) -> np.ndarray:
        outputs = self.method.execute([torch.from_numpy(np.ascontiguousarray(images, dtype=np.float32))])
        return outputs[0].numpy().copy()


class ExecuTorchRuntime:
    name = "executorch"

    def __init__(self, device: str = "cpu", threads: int = 1) -> None:
        self.device, self.threads = device, threads

    @property
    def version(self) -> str:
        return version("executorch")

    def load(self, exported: Exported, precision: str) -> Session:
        check_precision(self.name, precision, ("fp32",) if self.device == "cpu" else ())
        example = (torch.zeros(exported.batch, 3, *exported.shape),)
        try:
            program = torch.export.export(_Decoded(exported.model).eval(), example)
            lowered = to_edge_transform_and_lower(program, partitioner=[XnnpackPartitioner()]).to_executorch()
        except Exception as err:  # an op torch.export or XNNPACK cannot take: this cell only
            raise Unsupported(f"executorch cannot lower the model: {str(err).splitlines()[0][:200]}") from None
        path = exported.workdir / "model.pte"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(lowered.buffer)
        _unsafe_reset_threadpool(self.threads)  # XNNPACK's pool is process-wide; fix it to `threads`
        method = Runtime.get().load_program(str(path)).load_method("forward")
        return ExecuTorchSession(method)
