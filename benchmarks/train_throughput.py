"""Training throughput of lightyolo's real training loop, in images/s after warm-up.

The setting of YOLOv5's own train.py it is compared with (issue 2): yolov5n, 320 px,
batch 16, coco128 with mosaic on; YOLOv5 reaches about 8-9 images/s on a 2-core CPU.

    python benchmarks/train_throughput.py [--epochs 3] [--img 320] [--batch 16] [--workers 2]

Epoch 1 is warm-up (image cache, allocator, first-touch); the figure is the mean of the
later epochs. Nothing is evaluated or logged to MLflow.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import torch
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate

from lightyolo.configs import config_dir
from lightyolo.data.dataset import AugmentHyp, DetectionDataset
from lightyolo.data.loader import build_dataloader
from lightyolo.models.detector import build_detector
from lightyolo.train.loop import train
from lightyolo.train.settings import TrainSettings

REPO = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--img", type=int, default=320)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--scale", default="n")
    parser.add_argument("--data", default=str(REPO.parent / "shared" / "data" / "coco128"))
    args = parser.parse_args()

    with initialize_config_dir(str(config_dir()), version_base="1.3"):
        cfg = compose(
            "config",
            overrides=[
                "dataset=coco128", f"dataset.root={args.data}", f"model.scale={args.scale}",
                f"train.img_size={args.img}", f"train.batch_size={args.batch}",
                f"train.epochs={args.epochs}", f"train.eval_interval={args.epochs + 1}",
                "train.nominal_batch_size=64",  # YOLOv5's accumulation, as in its train.py
            ],
        )
    spec = instantiate(cfg.dataset)
    model = build_detector(cfg.backbone, cfg.neck, cfg.operator, scale=args.scale, nc=spec.nc)
    dataset = DetectionDataset(
        spec.train, args.img, augment=True, hyp=AugmentHyp(**cfg.train.augment),
        batch_size=args.batch, cache_images=True,
    )
    loader = build_dataloader(dataset, batch_size=args.batch, workers=args.workers, shuffle=True, seed=0)

    def no_eval(_model: torch.nn.Module) -> tuple[dict[str, float], None]:
        return {"map50": 0.0, "map50_95": 0.0}, None

    with tempfile.TemporaryDirectory() as tmp:
        result = train(
            model, loader, settings=TrainSettings.from_config(cfg.train), device=torch.device("cpu"), seed=0,
            checkpoint_dir=Path(tmp), evaluate=no_eval, on_epoch_end=lambda report: None,
        )
    for report in result.history:
        print(f"epoch {report.epoch + 1}: {report.images} images in {report.seconds:.1f} s "
              f"= {report.images / report.seconds:.2f} images/s")
    later = result.history[1:] or result.history
    rate = sum(r.images for r in later) / sum(r.seconds for r in later)
    print(f"yolov5{args.scale} {args.img}px batch {args.batch}, {torch.get_num_threads()} threads, "
          f"{args.workers} workers: {rate:.2f} images/s after warm-up")


if __name__ == "__main__":
    main()
