"""Cost of the training data pipeline alone (mosaic, affine, HSV, flip, collate).

Usage, from the repository root:
    python benchmarks/data_throughput.py [--img 640 320] [--batch 16] [--batches 16]
        [--rounds 3] [--baseline /work/main]

Reads the shared coco128 (`../shared/data/coco128`), builds the train `DetectionDataset` with
YOLOv5's scratch-low augmentation and the RAM image cache, and times `--batches` batches in
this process (workers 0) after one warm-up batch. The figure is CPU milliseconds per image
(`time.process_time`), which other processes sharing the cores distort far less than the
wall-clock rate (also printed).

`--baseline PATH` (a checkout of other lightyolo code, e.g. today's main) measures that code
as well, each measurement in a fresh subprocess with PYTHONPATH set to the checkout, the two
alternating round by round; it prints the median of each and the ratio baseline / current.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
COCO128 = REPO.parent / "shared" / "data" / "coco128"


def measure(img_size: int, batch_size: int, n_batches: int) -> dict[str, float]:
    """CPU ms per image and images per wall second of the importable lightyolo's pipeline."""
    import torch

    from lightyolo.data.dataset import DetectionDataset
    from lightyolo.data.loader import build_dataloader
    from lightyolo.data.specs import yolo_dataset

    torch.set_num_threads(1)
    split = {"images": "images/train2017", "labels": "labels/train2017"}
    spec = yolo_dataset(str(COCO128), train=split, val=split, name="coco128")
    dataset = DetectionDataset(spec.train, img_size, augment=True, cache_images=True)
    loader = build_dataloader(dataset, batch_size=batch_size, workers=0, shuffle=True, seed=0)
    batches = iter(loader)
    next(batches)  # warm-up
    start, cpu_start, seen = time.perf_counter(), time.process_time(), 0
    for _ in range(n_batches):
        try:
            images, _, _ = next(batches)
        except StopIteration:
            batches = iter(loader)
            images, _, _ = next(batches)
        seen += len(images)
    return {"cpu_ms": 1e3 * (time.process_time() - cpu_start) / seen,
            "images_s": seen / (time.perf_counter() - start)}


def measure_in(checkout: Path, img_size: int, batch_size: int, n_batches: int) -> dict[str, float]:
    """`measure` run in a subprocess importing lightyolo from `checkout`."""
    env = {**os.environ, "PYTHONPATH": str(checkout), "OMP_NUM_THREADS": "1"}
    out = subprocess.run(
        [sys.executable, __file__, "--measure-once", "--img", str(img_size), "--batch", str(batch_size),
         "--batches", str(n_batches)], env=env, check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--img", type=int, nargs="+", default=[640, 320])
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--batches", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--baseline", type=Path, default=None, help="checkout of the code to compare with")
    parser.add_argument("--measure-once", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)
    if args.measure_once:
        print(json.dumps(measure(args.img[0], args.batch, args.batches)))
        return
    codes = {"current": REPO} | ({"baseline": args.baseline.resolve()} if args.baseline else {})
    print(f"load average at start: {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores")
    for img_size in args.img:
        results: dict[str, list[dict[str, float]]] = {name: [] for name in codes}
        for _ in range(args.rounds):
            for name, checkout in reversed(codes.items()):  # baseline first in each round
                results[name].append(measure_in(checkout, img_size, args.batch, args.batches))
        medians = {name: statistics.median(r["cpu_ms"] for r in rows) for name, rows in results.items()}
        for name, rows in results.items():
            rounds = ", ".join(f"{r['cpu_ms']:.2f}" for r in rows)
            print(f"img {img_size} {name:>8} ({codes[name]}): {medians[name]:6.2f} CPU ms/image "
                  f"(rounds: {rounds}), "
                  f"{statistics.median(r['images_s'] for r in rows):6.1f} images/s wall")
        if "baseline" in medians:
            print(f"img {img_size} baseline / current: {medians['baseline'] / medians['current']:.2f}x "
                  f"lower CPU ms/image")
    print(f"load average at end: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
