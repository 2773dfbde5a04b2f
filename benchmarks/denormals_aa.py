"""Do a cell's weights change its speed? The bench stage's A/A check: the same cell trained
with different seeds, timed interleaved in one process, with and without flushing subnormal
floats to zero (issue 29: two seeds of c3/pan/conv once came out 13.7 % apart in ONNX Runtime).

For each completed run named in `runs=` (an MLflow store's experiment, e.g. the head
comparison's `c3-pan-conv-s0,c3-pan-conv-s1,c3-pan-conv-s2`) it counts the subnormal values
(0 < |x| < 1.18e-38) among the fused model's weights and among its activations on one real
training-sized input, then times ONNX Runtime (1 thread, CPU time) and eager PyTorch per cell
twice: as deployed, and with denormals flushed to zero (ORT's `session.set_denormal_as_zero`,
`torch.set_flush_denormal`), all interleaved round by round (lightyolo.bench.stage). If the
cells differ only without the flush, their weights' subnormals are what made one slower.

    PYTHONPATH=. python benchmarks/denormals_aa.py store=heads.db experiment=heads runs=c3-pan-conv-s0,c3-pan-conv-s1 [rounds=20]
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import torch
from onnx import numpy_helper
from omegaconf import OmegaConf

from lightyolo.bench.stage import interleaved_timings, round_ratio
from lightyolo.export import export_onnx, fuse_batchnorm, load_run
from lightyolo.store.client import Store
from lightyolo.store.queries import completed_runs

TINY = np.finfo(np.float32).tiny  # the smallest normal float32


def subnormal_share(values: np.ndarray) -> tuple[int, int]:
    flat = np.abs(values.astype(np.float32, copy=False)).ravel()
    return int(((flat > 0) & (flat < TINY)).sum()), flat.size


def weight_subnormals(path: Path) -> tuple[int, int]:
    counts = [subnormal_share(numpy_helper.to_array(t)) for t in onnx.load(str(path)).graph.initializer]
    return sum(c for c, _ in counts), sum(n for _, n in counts)


def activation_subnormals(model: torch.nn.Module, images: torch.Tensor) -> tuple[int, int]:
    found = [0, 0]

    def count(_module, _inputs, output) -> None:
        if isinstance(output, torch.Tensor) and output.is_floating_point():
            c, n = subnormal_share(output.detach().numpy())
            found[0] += c
            found[1] += n

    hooks = [m.register_forward_hook(count) for m in model.modules() if not list(m.children())]
    with torch.no_grad():
        model(images)
    for hook in hooks:
        hook.remove()
    return found[0], found[1]


def ort_pass(path: Path, images: np.ndarray, flush: bool):
    options = ort.SessionOptions()
    options.intra_op_num_threads = options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    if flush:
        options.add_session_config_entry("session.set_denormal_as_zero", "1")
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    return lambda: session.run(None, {name: images})


def torch_pass(model: torch.nn.Module, images: torch.Tensor, flush: bool):
    def forward() -> None:
        torch.set_flush_denormal(flush)
        with torch.inference_mode():
            model(images)
        torch.set_flush_denormal(False)
    return forward


def main(argv: list[str]) -> int:
    options = dict(a.split("=", 1) for a in argv)
    store = Store(f"sqlite:///{Path(options.get('store', 'heads.db')).resolve()}")
    wanted = options["runs"].split(",")
    rounds = int(options.get("rounds", 20))
    torch.set_num_threads(1)
    runs = {r.run_name: r for r in completed_runs(store, options.get("experiment", "heads")) if r.run_name in wanted}
    missing = [name for name in wanted if name not in runs]
    if missing:
        print(f"no completed run named {', '.join(missing)}", file=sys.stderr)
        return 2
    passes = {}
    with tempfile.TemporaryDirectory() as tmp:
        rng = np.random.default_rng(0)
        for name in wanted:
            config, model = load_run(store.uri, runs[name].run_id, Path(tmp) / name)
            img = int(OmegaConf.select(config, "train.img_size"))
            images = rng.random((1, 3, img, img), dtype=np.float32)
            fused = fuse_batchnorm(model).eval()
            path = export_onnx(model, Path(tmp) / f"{name}.onnx", img)
            w, wn = weight_subnormals(path)
            a, an = activation_subnormals(fused, torch.from_numpy(images))
            print(f"{name}: subnormal weights {w}/{wn} ({100 * w / wn:.3f} %), "
                  f"subnormal activations {a}/{an} ({100 * a / an:.3f} %) on one input")
            for flush in (False, True):
                passes[(name, "onnxruntime", flush)] = ort_pass(path, images, flush)
                passes[(name, "torch", flush)] = torch_pass(fused, torch.from_numpy(images), flush)
        times = interleaved_timings(passes, rounds=rounds, warmup=5, iters=20, clock="cpu")
    first = wanted[0]
    for runtime in ("onnxruntime", "torch"):
        for flush in (False, True):
            label = "denormals flushed" if flush else "as deployed"
            medians = {n: float(np.median(np.median(times[(n, runtime, flush)], axis=1))) for n in wanted}
            line = ", ".join(f"{n} {m:.2f} ms" for n, m in medians.items())
            ratios = []
            for other in wanted[1:]:
                r = round_ratio(times[(other, runtime, flush)], times[(first, runtime, flush)])
                ratios.append(f"{other}/{first} {r.median:.3f} [{r.ci_low:.3f}, {r.ci_high:.3f}]")
            print(f"{runtime}, {label}: {line}; CPU-time ratio {'; '.join(ratios)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
