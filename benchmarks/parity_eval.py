"""YOLOv5 parity through the real pipeline: the official yolov5n weights evaluated on coco128.

Usage, from the repository root:
    python benchmarks/parity_eval.py [--img 640 320] [--eval-batch 16] [--threads N]

For each size, composes `backbone=c3 neck=pan operator=conv model.scale=n
model.weights=../shared/weights/yolov5n.state_dict.pt train.epochs=0 dataset=coco128` (the
issue-6 acceptance command), runs `lightyolo.pipeline.run` into a temporary MLflow store and
prints the logged mAP50-95 / mAP50 (pycocotools against ground truth built from the YOLO
labels) next to YOLOv5 val.py's own figures at 640 (0.367 / 0.571,
`../shared/weights/README.md`), the evaluation's own wall time on the 128 images (the
logged `eval_seconds`: inference, NMS and pycocotools) split into its stages
(`eval_seconds/<stage>`: load, inference, nms, to_coco, cocoeval) and the wall time of the
whole run.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from hydra import compose, initialize_config_dir

from lightyolo import pipeline
from lightyolo.configs import config_dir
from lightyolo.eval.evaluate import STAGES
from lightyolo.store.client import Store

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
REFERENCE_640 = {"map50_95": 0.367, "map50": 0.571}  # YOLOv5 val.py + pycocotools, labels GT


def parity_overrides(img_size: int, tracking_uri: str, eval_batch: int) -> list[str]:
    return [
        "backbone=c3", "neck=pan", "operator=conv", "model.scale=n",
        f"model.weights={SHARED / 'weights' / 'yolov5n.state_dict.pt'}",
        "train.epochs=0", "dataset=coco128", f"dataset.root={SHARED / 'data' / 'coco128'}",
        f"train.img_size={img_size}", f"eval.batch_size={eval_batch}", "train.workers=0",
        "bench.warmup=1", "bench.iters=3", f"mlflow.tracking_uri={tracking_uri}",
        "experiment=parity",
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--img", type=int, nargs="+", default=[640, 320])
    parser.add_argument("--eval-batch", type=int, default=16,
                        help="rect batch size: the pipeline's default 16 (val.py's is 32, mAP50 0.563)")
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="lightyolo-parity-") as tmp:
        tracking_uri = f"sqlite:///{Path(tmp) / 'mlflow.db'}"
        stage_header = " ".join(f"{stage:>9}" for stage in STAGES)
        print(f"{'img':>5} {'mAP50-95':>9} {'mAP50':>7} {'eval s':>7} {stage_header} {'run s':>7}  "
              f"(YOLOv5 val.py at 640: {REFERENCE_640['map50_95']:.3f} / {REFERENCE_640['map50']:.3f})")
        for img_size in args.img:
            overrides = parity_overrides(img_size, tracking_uri, args.eval_batch)
            if args.threads:
                overrides.append(f"train.threads={args.threads}")
            with initialize_config_dir(str(config_dir()), version_base="1.3"):
                cfg = compose("config", overrides=overrides, return_hydra_config=True)
            started = time.perf_counter()
            result = pipeline.run(cfg, output_dir=Path(tmp) / f"run-{img_size}")
            run_seconds = time.perf_counter() - started
            row = Store(tracking_uri).runs_frame("parity").set_index("run_id").loc[result.run_id]
            stages = " ".join(f"{row[f'metrics.eval_seconds/{stage}']:>9.2f}" for stage in STAGES)
            print(f"{img_size:>5} {row['metrics.val/map50_95']:>9.4f} {row['metrics.val/map50']:>7.4f} "
                  f"{row['metrics.eval_seconds']:>7.1f} {stages} {run_seconds:>7.1f}")


if __name__ == "__main__":
    main()
