"""Images per second of the training loader at 1, 2, 4, ... workers: where a machine saturates.

Usage, from the repository root:
    python benchmarks/loader_workers.py [--img 640] [--batch 16] [--batches 32]
        [--workers 1 2 4 8 16] [--data ../shared/data/coco128]

Builds the train `DetectionDataset` (YOLOv5's scratch-low augmentation with mosaic, RAM image
cache) once, then for each worker count starts a loader, discards the first
`workers + 1` batches (worker start-up and the prefetch queue filling) and times the next
`--batches` batches, wall clock: the rate a training loop that never waits on the GPU could
consume. The loader alone is measured; compare with a training epoch's images/s to see
whether training waits on data.
"""

from __future__ import annotations

import argparse
import logging
import os
import time
from pathlib import Path

import torch

from lightyolo.data.dataset import DetectionDataset
from lightyolo.data.loader import available_cores, build_dataloader
from lightyolo.data.specs import yolo_dataset

REPO = Path(__file__).resolve().parents[1]


def loader_rate(dataset: DetectionDataset, batch_size: int, workers: int, n_batches: int, pin_memory: bool) -> float:
    """Images per wall-clock second of a `workers`-process loader after its start-up."""
    loader = build_dataloader(dataset, batch_size=batch_size, workers=workers, shuffle=True, seed=0,
                              pin_memory=pin_memory)
    batches, seen = iter(loader), 0

    def next_batch() -> torch.Tensor:
        nonlocal batches
        try:
            return next(batches)[0]
        except StopIteration:
            batches = iter(loader)
            return next(batches)[0]

    for _ in range(workers + 1):
        next_batch()
    start = time.perf_counter()
    for _ in range(n_batches):
        seen += len(next_batch())
    return seen / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--img", type=int, default=640)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--batches", type=int, default=32)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2, 4, 8, 16])
    parser.add_argument("--data", default=str(REPO.parent / "shared" / "data" / "coco128"))
    parser.add_argument("--pin-memory", action="store_true", help="pin batches, as for a CUDA device")
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)
    torch.set_num_threads(1)
    split = {"images": "images/train2017", "labels": "labels/train2017"}
    spec = yolo_dataset(args.data, train=split, val=split, name="loader-bench")
    dataset = DetectionDataset(spec.train, args.img, augment=True, cache_images=True)
    print(f"{available_cores()} cores available, load average {os.getloadavg()[0]:.2f}; "
          f"img {args.img}, batch {args.batch}, {args.batches} batches per setting")
    for workers in args.workers:
        rate = loader_rate(dataset, args.batch, workers, args.batches, args.pin_memory)
        print(f"workers {workers:>2}: {rate:7.1f} images/s")


if __name__ == "__main__":
    main()
