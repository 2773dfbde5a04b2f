"""A deployment runtime from a package outside the repository, for the tests: a module and
the dist-info pip would leave, whose entry_points.txt declares it in `lightyolo.runtimes`."""

from __future__ import annotations

import textwrap
from pathlib import Path

from lightyolo.deploy.registry import ENTRY_POINT_GROUP

TOY = "toyruntime"


def write_toy_package(site: Path) -> None:
    """Write the package into `site` (a folder to put on sys.path). Its runtime runs the export in ONNX
    Runtime with every graph optimisation off (a runtime lightyolo does not ship)."""
    (site / "toy_runtime_pkg").mkdir(parents=True)
    (site / "toy_runtime_pkg" / "__init__.py").write_text(textwrap.dedent('''
        import onnxruntime as ort

        from lightyolo.deploy.runtime import Session, check_precision


        class ToySession(Session):
            def __init__(self, session):
                self.session = session
                self.description = {"graph_optimization": "disabled"}

            def run(self, images):
                return self.session.run(None, {"images": images})[0]


        class ToyRuntime:
            name = "toyruntime"

            def __init__(self, device="cpu", threads=1):
                self.device, self.threads = device, threads

            version = "0.1"

            def load(self, exported, precision):
                check_precision(self.name, precision, ("fp32",))
                options = ort.SessionOptions()
                options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
                options.intra_op_num_threads = self.threads
                return ToySession(ort.InferenceSession(str(exported.onnx), options, providers=["CPUExecutionProvider"]))
    '''))
    info = site / "toy_runtime_pkg-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: toy-runtime-pkg\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(f"[{ENTRY_POINT_GROUP}]\n{TOY} = toy_runtime_pkg:ToyRuntime\n")
