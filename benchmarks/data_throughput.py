"""Images per second of the training data pipeline alone (mosaic, affine, HSV, flip, collate).

Usage, from the repository root:
    python benchmarks/data_throughput.py [--img 320] [--batch 16] [--batches 16] [--workers 0 2]

Reads the shared coco128 (`../shared/data/coco128`), builds the train `DetectionDataset` with
YOLOv5's scratch-low augmentation and times `--batches` batches per setting, after one warm-up
batch (which also starts the workers). With workers 0 it also prints the CPU milliseconds
spent per image, a figure that other processes sharing the cores distort far less than the
wall-clock rate.
"""

from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path

import torch

from lightyolo.data.dataset import DetectionDataset
from lightyolo.data.loader import build_dataloader
from lightyolo.data.specs import yolo_dataset

COCO128 = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "coco128"


def images_per_second(dataset: DetectionDataset, batch_size: int, workers: int, n_batches: int
                      ) -> tuple[float, float]:
    """(images per wall-clock second, CPU ms per image of this process)."""
    loader = build_dataloader(dataset, batch_size=batch_size, workers=workers, shuffle=True, seed=0)
    batches = iter(loader)
    next(batches)  # warm-up: worker start-up is not throughput
    start, cpu_start, seen = time.perf_counter(), time.process_time(), 0
    for _ in range(n_batches):
        try:
            images, _, _ = next(batches)
        except StopIteration:
            batches = iter(loader)
            images, _, _ = next(batches)
        seen += len(images)
    return seen / (time.perf_counter() - start), 1e3 * (time.process_time() - cpu_start) / seen


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--img", type=int, default=320)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--batches", type=int, default=16)
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 2])
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)
    torch.set_num_threads(1)
    split = {"images": "images/train2017", "labels": "labels/train2017"}
    spec = yolo_dataset(str(COCO128), train=split, val=split, name="coco128")
    for cache in (False, True):
        start = time.perf_counter()
        dataset = DetectionDataset(spec.train, args.img, augment=True, cache_images=cache)
        setup = time.perf_counter() - start
        for workers in args.workers:
            rate, cpu_ms = images_per_second(dataset, args.batch, workers, args.batches)
            cpu = f", {cpu_ms:5.1f} CPU ms/image" if workers == 0 else ""
            print(f"img {args.img} batch {args.batch} cache_images={cache!s:5} (setup {setup:4.1f} s) "
                  f"workers {workers}: {rate:6.1f} images/s{cpu}")


if __name__ == "__main__":
    main()
