"""YOLOv5n's official weights on coco128 at 640, deployed: mAP and latency per runtime and precision.

    nice -n 10 python benchmarks/deploy_coco128.py [--rounds 10] [--warmup 2] [--iters 5]
        [--calibration-images 300] [--runtimes torch,onnxruntime,openvino,ncnn]

1. PyTorch, as the pipeline evaluates (`dataset=coco128 model.weights=… train.epochs=0`,
   rectangular batches): `pipeline.run` into a throwaway MLflow store.
2. mAP50-95 / mAP50 through each runtime at fp32 and INT8 (`lightyolo.deploy.experiment.deploy_cell`:
   the same rectangular batches, one export per batch shape, batch 1 per call, the same NMS
   and pycocotools path; PyTorch fp32 on that path is the reference each drop is taken from).
3. Latency of every (runtime, precision): the bench stage's protocol (`deployed_passes`,
   `interleaved_timings`, process CPU time at 1 thread, median of round medians with its 95 %
   bootstrap CI over rounds) and each one's speed-up over PyTorch fp32 and INT8's over its own
   fp32, per round (`round_ratio`).

INT8 is calibrated on `--calibration-images` drawn from coco128's TRAINING split; coco128's val
split is the same 128 images, so the calibration overlaps the evaluation images (printed): the
INT8 drop here is, if anything, flattered. Threads: 1 (torch, ORT, OpenVINO, ncnn alike).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

from hydra import compose, initialize_config_dir  # noqa: E402
from omegaconf import OmegaConf  # noqa: E402

from lightyolo import pipeline  # noqa: E402
from lightyolo.bench.experiment import deployed_passes  # noqa: E402
from lightyolo.bench.runtimes import build_deployments, configure_threads, device_name  # noqa: E402
from lightyolo.bench.stage import interleaved_timings, round_ratio, summarise  # noqa: E402
from lightyolo.configs import config_dir  # noqa: E402
from lightyolo.deploy.calibration import read_dataset_spec, training_calibration  # noqa: E402
from lightyolo.deploy.experiment import DeploySettings, deploy_cell  # noqa: E402
from lightyolo.models.detector import build_detector  # noqa: E402
from lightyolo.models.weights import load_weights  # noqa: E402
from lightyolo.settings import resolved_config  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("LIGHTYOLO_SHARED_DIR") or REPO.parent / "shared")
WEIGHTS = SHARED / "weights" / "yolov5n.state_dict.pt"
COCO128 = SHARED / "data" / "coco128"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--iters", type=int, default=5)
    parser.add_argument("--calibration-images", type=int, default=300)
    parser.add_argument("--runtimes", default="torch,onnxruntime,openvino,ncnn")
    args = parser.parse_args()
    for path in (WEIGHTS, COCO128):
        if not path.exists():
            sys.exit(f"deploy_coco128: {path} is missing (set LIGHTYOLO_SHARED_DIR)")
    runtimes = tuple(args.runtimes.split(","))
    configure_threads(1)
    tmp = Path(tempfile.mkdtemp(prefix="deploy-coco128-"))
    overrides = [
        "dataset=coco128", f"dataset.root={COCO128}", f"model.weights={WEIGHTS}", "train.epochs=0",
        "train.threads=1", "train.workers=0", "train.device=cpu", "bench.warmup=1", "bench.iters=2",
        f"mlflow.tracking_uri=sqlite:///{tmp / 'mlflow.db'}", "experiment=deploy_coco128",
    ]
    with initialize_config_dir(str(config_dir()), version_base="1.3"):
        cfg = compose("config", overrides=overrides, return_hydra_config=True)
    print(f"{device_name('cpu')}; 1 thread; yolov5n official weights; coco128 (128 images) at 640")
    print(f"load: {subprocess.run(['uptime'], capture_output=True, text=True).stdout.strip()}")

    # 1. PyTorch as the pipeline evaluates it (rectangular batches).
    result = pipeline.run(cfg, output_dir=tmp / "run")
    print(f"\nPyTorch, pipeline evaluation (rect batches of {cfg.eval.batch_size}): "
          f"mAP50-95 {result.metrics['map50_95']:.4f}, mAP50 {result.metrics['map50']:.4f}")

    # 2. mAP through each runtime and precision (square letterbox, batch 1).
    config = OmegaConf.create(resolved_config(cfg))
    model = build_detector(config.backbone, config.neck, config.operator, scale=config.model.scale, nc=80)
    assert load_weights(model, WEIGHTS).complete
    model.eval()
    settings = DeploySettings(runtimes=runtimes, precisions=("fp32", "int8"), threads=1,
                              calibration_images=args.calibration_images)
    figures = deploy_cell(config, model, "yolov5n", settings, tmp / "deployed", log=lambda m: print(m, flush=True))
    reference = figures["torch_fp32"][0]
    print("\n| runtime | precision | mAP50-95 | mAP50 | mAP50-95 − PyTorch fp32 (same path) |\n|---|---|---|---|---|")
    for key, (m5095, m50, how) in figures.items():
        runtime, precision = key.rsplit("_", 1)
        if m5095 is None:
            print(f"| {runtime} | {precision} | unsupported: {how['reason']} | | |")
        else:
            print(f"| {runtime} | {precision} | {m5095:.4f} | {m50:.4f} | {m5095 - reference:+.4f} |")
    calibration = next((how["calibration"] for _, _, how in figures.values() if "calibration" in how), None)
    if calibration:
        print(f"\nINT8 calibration: {calibration}")

    # 3. Latency, the bench stage's protocol.
    spec = read_dataset_spec(config, "coco128")
    deployments = build_deployments(runtimes, ("fp32", "int8"), "cpu", 1)
    made = deployed_passes(
        {"yolov5n": (model, 640)}, deployments, 1, tmp / "bench",
        {"yolov5n": lambda shape: training_calibration(spec, 640, args.calibration_images, 0, shape)},
    )
    for (_, key), reason in made.unsupported.items():
        print(f"latency {key}: unsupported ({reason})")
    times = interleaved_timings(made.passes, rounds=args.rounds, warmup=args.warmup, iters=args.iters, clock="cpu")
    base = times[("yolov5n", "torch")]
    print(f"\nLatency, process CPU time at 1 thread, batch 1, 640: {args.rounds} interleaved rounds × "
          f"({args.warmup} warm-up + {args.iters} timed passes); median of round medians [95 % bootstrap CI "
          f"over rounds]; speed-ups per round, median [95 % CI]\n")
    print("| runtime_precision | ms [95 % CI] | speed-up over torch fp32 | INT8 over own fp32 |\n|---|---|---|---|")
    for (_, key), values in times.items():
        s = summarise(values)
        over_torch = round_ratio(base, values)
        own = ""
        if key.endswith("_int8") and ("yolov5n", key.removesuffix("_int8")) in times:
            r = round_ratio(times[("yolov5n", key.removesuffix("_int8"))], values)
            own = f"{r.median:.2f}× [{r.ci_low:.2f}, {r.ci_high:.2f}]"
        print(f"| {key} | {s.median_ms:.1f} [{s.ci_low_ms:.1f}, {s.ci_high_ms:.1f}] | "
              f"{over_torch.median:.2f}× [{over_torch.ci_low:.2f}, {over_torch.ci_high:.2f}] | {own} |")
    print(f"\nload: {subprocess.run(['uptime'], capture_output=True, text=True).stdout.strip()}")


if __name__ == "__main__":
    main()
