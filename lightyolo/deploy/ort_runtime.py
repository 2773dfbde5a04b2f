"""ONNX Runtime on the cell's ONNX export: the CPU execution provider, or CUDA / TensorRT
where that onnxruntime build has them; INT8 by its static post-training quantization.

Sessions: intra_op_num_threads = the bench's threads, inter_op 1, sequential execution, no
spin-waiting (a spinning pool would keep burning a core into the next, interleaved,
measurement).

INT8 (`onnxruntime.quantization.quantize_static`): QDQ format, int8 weights per channel,
uint8 activations, MinMax calibration over the calibration images, after ORT's
`quant_pre_process`. The Detect head (its three output convolutions and the box decode) stays
float32: the decoded output holds pixels (up to the image size) and probabilities (0–1) in
one tensor, which one uint8 scale cannot carry.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from onnxruntime.quantization import (
    CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType, quantize_static,
)
from onnxruntime.quantization.shape_inference import quant_pre_process

from lightyolo.deploy.runtime import Exported, Pass, Session, Unsupported, check_precision
from lightyolo.export import INPUT_NAME

HEAD_SCOPE = "/head/"  # the exporter's node names of the Detect head (lightyolo.export)
INT8_METHOD = (
    "onnxruntime.quantization.quantize_static: QDQ, int8 weights per channel, uint8 activations, "
    "MinMax calibration; Detect head kept float32"
)
PROVIDERS = {"onnxruntime": "CPUExecutionProvider", "onnxruntime_trt": "TensorrtExecutionProvider"}


class _Batches(CalibrationDataReader):
    def __init__(self, batches: list[np.ndarray]) -> None:
        self._batches = iter(batches)

    def get_next(self) -> dict[str, np.ndarray] | None:
        batch = next(self._batches, None)
        return None if batch is None else {INPUT_NAME: batch}


def quantize_int8(onnx_path: Path, batches: list[np.ndarray], out: Path) -> Path:
    """A QDQ INT8 copy of `onnx_path` calibrated on `batches` (module docstring)."""
    prepared = out.with_name(out.stem + ".pre.onnx")
    quant_pre_process(str(onnx_path), str(prepared), skip_symbolic_shape=True)
    head = [node.name for node in onnx.load(str(prepared)).graph.node if HEAD_SCOPE in node.name]
    quantize_static(
        str(prepared), str(out), _Batches(batches), quant_format=QuantFormat.QDQ, per_channel=True,
        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
        calibrate_method=CalibrationMethod.MinMax, nodes_to_exclude=head,
    )
    return out


class OrtSession(Session):
    def __init__(self, session: ort.InferenceSession, description: dict, on_gpu: bool) -> None:
        self.session, self.description, self.on_gpu = session, description, on_gpu

    def run(self, images: np.ndarray) -> np.ndarray:
        return self.session.run(None, {INPUT_NAME: np.ascontiguousarray(images, dtype=np.float32)})[0]

    def timed_pass(self, images: np.ndarray) -> Pass:
        if not self.on_gpu:
            return super().timed_pass(images)
        # Input and outputs stay on the GPU, as the torch runtime's do.
        binding = self.session.io_binding()
        staged = ort.OrtValue.ortvalue_from_numpy(np.ascontiguousarray(images, dtype=np.float32), "cuda", 0)
        binding.bind_ortvalue_input(INPUT_NAME, staged)
        for output in self.session.get_outputs():
            binding.bind_output(output.name, "cuda")
        return lambda: self.session.run_with_iobinding(binding)  # returns once the outputs are written


class OnnxRuntime:
    """`onnxruntime` (CPU EP on cpu, CUDA EP on cuda) and `onnxruntime_trt` (TensorRT EP)."""

    def __init__(self, device: str = "cpu", threads: int = 1, name: str = "onnxruntime") -> None:
        self.device, self.threads, self.name = device, threads, name

    @property
    def version(self) -> str:
        return ort.__version__

    @property
    def provider(self) -> str:
        if self.name == "onnxruntime" and self.device == "cuda":
            return "CUDAExecutionProvider"
        return PROVIDERS[self.name]

    def available(self) -> str | None:
        """Why this runtime cannot run here, or None."""
        if self.provider not in ort.get_available_providers():
            return (f"{self.name} on {self.device} needs {self.provider}, not in this onnxruntime "
                    f"{ort.__version__} (available: {', '.join(ort.get_available_providers())})")
        return None

    def load(self, exported: Exported, precision: str) -> Session:
        check_precision(self.name, precision, ("fp32", "fp16", "int8") if self.name == "onnxruntime_trt" else ("fp32", "int8"))
        reason = self.available()
        if reason:
            raise Unsupported(reason)
        model, description = exported.onnx, {"provider": self.provider}
        if precision == "int8":
            calibration = exported.calibration
            model = quantize_int8(exported.onnx, calibration.batches, exported.workdir / "model.ort-int8.onnx")
            description |= {"quantization": INT8_METHOD, "calibration": calibration.description}
        options = ort.SessionOptions()
        options.intra_op_num_threads = self.threads
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        provider_options = [{"trt_fp16_enable": precision == "fp16", "trt_int8_enable": precision == "int8"}] \
            if self.provider == "TensorrtExecutionProvider" else None
        try:
            session = ort.InferenceSession(str(model), options, providers=[self.provider],
                                           provider_options=provider_options)
        except Exception as err:  # an op this provider lacks: the cell is unsupported, not the stage
            raise Unsupported(f"{self.name} cannot load the export: {str(err).splitlines()[0]}") from None
        return OrtSession(session, description, self.device == "cuda")


def tensorrt_runtime(device: str = "cuda", threads: int = 1) -> OnnxRuntime:
    """`onnxruntime_trt`: ONNX Runtime's TensorRT execution provider (onnxruntime-gpu builds)."""
    return OnnxRuntime(device, threads, name="onnxruntime_trt")
