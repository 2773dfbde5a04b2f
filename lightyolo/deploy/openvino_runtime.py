"""OpenVINO's CPU plugin on the cell's ONNX export (read directly, no conversion step).

Compiled with INFERENCE_NUM_THREADS = the bench's threads, one stream, the latency hint, and
an explicit INFERENCE_PRECISION_HINT: f32 for fp32 and int8 (OpenVINO would otherwise pick
bf16 on CPUs that have it), f16 for fp16, which counts as supported only where the compiled
model reports f16 back.

INT8: NNCF's post-training quantization (`nncf.quantize`, MIXED preset, calibration over all
calibration images), with the Detect head left float (as for ONNX Runtime: ort_runtime.py).
"""

from __future__ import annotations

import numpy as np
import openvino as ov

from lightyolo.deploy.runtime import Exported, Session, Unsupported, check_precision

HINTS = {"fp32": "f32", "fp16": "f16", "int8": "f32"}
HEAD_PATTERN = ".*/head/.*"  # the exporter's node names of the Detect head
INT8_METHOD = "nncf.quantize: MIXED preset, calibration over every calibration image; Detect head kept float"


class OpenVinoSession(Session):
    def __init__(self, compiled: ov.CompiledModel, description: dict) -> None:
        self.request = compiled.create_infer_request()
        self.description = description

    def run(self, images: np.ndarray) -> np.ndarray:
        self.request.infer({0: np.ascontiguousarray(images, dtype=np.float32)})
        return self.request.get_output_tensor(0).data.copy()  # the request reuses its buffer


class OpenVinoRuntime:
    name = "openvino"

    def __init__(self, device: str = "cpu", threads: int = 1) -> None:
        self.device, self.threads = device, threads

    @property
    def version(self) -> str:
        return ov.get_version()

    def load(self, exported: Exported, precision: str) -> Session:
        check_precision(self.name, precision, ("fp32", "fp16", "int8") if self.device == "cpu" else ())
        core = ov.Core()
        model = core.read_model(str(exported.onnx))
        description: dict = {}
        if precision == "int8":
            import nncf  # slow to import: only for int8

            calibration = exported.calibration
            model = nncf.quantize(
                model, nncf.Dataset(calibration.batches), preset=nncf.QuantizationPreset.MIXED,
                subset_size=len(calibration.batches), ignored_scope=nncf.IgnoredScope(patterns=[HEAD_PATTERN]),
            )
            description |= {"quantization": f"{INT8_METHOD} (nncf {nncf.__version__})",
                            "calibration": calibration.description}
        compiled = core.compile_model(model, "CPU", {
            "INFERENCE_NUM_THREADS": self.threads, "NUM_STREAMS": 1, "PERFORMANCE_HINT": "LATENCY",
            "INFERENCE_PRECISION_HINT": HINTS[precision],
        })
        effective = compiled.get_property("INFERENCE_PRECISION_HINT")
        if precision == "fp16" and effective != ov.Type.f16:
            raise Unsupported(f"openvino: this CPU runs fp16 as {effective.get_type_name()}")
        description["inference_precision"] = effective.get_type_name()
        return OpenVinoSession(compiled, description)
