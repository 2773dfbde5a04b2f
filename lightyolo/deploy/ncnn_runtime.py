"""ncnn (Tencent's inference library for phones and boards), on the CPU, from the cell's ONNX
export converted by `pnnx model.onnx inputshape=[1,3,H,W]` into `model.ncnn.param/.bin`
(input `in0`, output `out0`).

One image per call (pnnx drops the batch axis); fp32 with ncnn's fp16/bf16 storage and
arithmetic switched off, `opt.num_threads` = the bench's threads. INT8 is not offered: ncnn
quantizes with its `ncnn2table`/`ncnn2int8` tools, which the ncnn and pnnx wheels do not ship.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import ncnn
import numpy as np

from lightyolo.deploy.runtime import Exported, Session, Unsupported, check_precision

REDUCED_PRECISION = ("use_fp16_packed", "use_fp16_storage", "use_fp16_arithmetic", "use_bf16_storage")


def convert_with_pnnx(onnx_path: Path, shape: tuple[int, int]) -> tuple[Path, Path]:
    """`model.ncnn.param` and `.bin` beside `onnx_path`; Unsupported naming pnnx's complaint."""
    # the venv's own bin first: a venv's python may run without the venv on PATH
    executable = shutil.which("pnnx", path=str(Path(sys.executable).parent)) or shutil.which("pnnx")
    if executable is None:
        raise Unsupported("ncnn: the pnnx converter is not installed (pip install pnnx)")
    done = subprocess.run(
        [executable, onnx_path.name, f"inputshape=[1,3,{shape[0]},{shape[1]}]"],
        cwd=onnx_path.parent, capture_output=True, text=True, timeout=600,
    )
    param, weights = onnx_path.with_suffix(".ncnn.param"), onnx_path.with_suffix(".ncnn.bin")
    if done.returncode != 0 or not param.is_file() or not weights.is_file():
        last = (done.stderr.strip() or done.stdout.strip() or "no output").splitlines()[-1]
        raise Unsupported(f"ncnn: pnnx could not convert the export (exit {done.returncode}: {last})")
    return param, weights


class NcnnSession(Session):
    def __init__(self, net: ncnn.Net) -> None:
        self.net = net
        self.description = {"converter": "pnnx (ONNX → ncnn)", "storage": "fp32"}

    def run(self, images: np.ndarray) -> np.ndarray:
        outputs = []
        for image in np.ascontiguousarray(images, dtype=np.float32):
            # ncnn.Mat wraps the array's memory without copying: `image` must outlive it.
            extractor = self.net.create_extractor()
            extractor.input("in0", ncnn.Mat(image))
            status, out = extractor.extract("out0")
            if status != 0:
                raise RuntimeError(f"ncnn: extract failed with status {status}")
            outputs.append(np.array(out))
        return np.stack(outputs)


class NcnnRuntime:
    name = "ncnn"

    def __init__(self, device: str = "cpu", threads: int = 1) -> None:
        self.device, self.threads = device, threads

    @property
    def version(self) -> str:
        return ncnn.__version__

    def load(self, exported: Exported, precision: str) -> Session:
        check_precision(self.name, precision, ("fp32",) if self.device == "cpu" else ())
        if exported.batch != 1:
            raise Unsupported("ncnn runs one image per call (batch 1 only)")
        directory = exported.workdir / "ncnn"
        directory.mkdir(parents=True, exist_ok=True)
        onnx_path = directory / "model.onnx"
        if not onnx_path.exists():
            shutil.copyfile(exported.onnx, onnx_path)
        param, weights = convert_with_pnnx(onnx_path, exported.shape)
        net = ncnn.Net()
        net.opt.num_threads = self.threads
        net.opt.use_vulkan_compute = False
        for option in REDUCED_PRECISION:
            setattr(net.opt, option, False)
        if net.load_param(str(param)) != 0 or net.load_model(str(weights)) != 0:
            raise Unsupported(f"ncnn: cannot load {param.name} converted by pnnx (a layer ncnn lacks; ncnn names it on stderr)")
        return NcnnSession(net)
