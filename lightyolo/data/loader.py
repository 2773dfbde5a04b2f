"""`build_dataloader`: a reproducible torch DataLoader over a `DetectionDataset`.

Reproducibility: the loader's seeded `torch.Generator` orders the samples and draws one seed
per sample, which travels with the index (`dataset[(i, seed)]`), so a sample's augmentation
depends on the loader seed, the epoch and the sample's position only, not on the number of
workers or which worker loads it. Each worker's global numpy / `random` / torch generators and
the dataset's own `rng` are seeded from torch's per-worker seed as well, for any other
randomness.

Workers: `resolve_workers` turns `train.workers` (an integer, or `auto` / null) into a count;
auto is the cores this process may use, capped at `MAX_AUTO_WORKERS`.
"""

from __future__ import annotations

import multiprocessing
import os
import random
import sys
from collections.abc import Iterator, Sized

import cv2
import numpy as np
import torch
from torch.utils.data import DataLoader, RandomSampler, Sampler, SequentialSampler, get_worker_info

from lightyolo.data.dataset import DetectionDataset


class SeededIndexSampler(Sampler[tuple[int, int]]):
    """Yields `(index, seed)`: the indices of `order` with a seed per sample from `generator`."""

    def __init__(self, order: Sampler[int] | Sized, generator: torch.Generator) -> None:
        self.order = order
        self.generator = generator

    def __iter__(self) -> Iterator[tuple[int, int]]:
        indices = list(self.order)
        seeds = torch.randint(0, 2**62, (len(indices),), generator=self.generator).tolist()
        return iter(zip(indices, seeds))

    def __len__(self) -> int:
        return len(self.order)


MAX_AUTO_WORKERS = 8
CUDA_PREFETCH_FACTOR = 4  # batches each worker keeps ready when feeding a GPU


def available_cores() -> int:
    """CPU cores this process may run on (its affinity mask, which containers and taskset set)."""
    return len(os.sched_getaffinity(0))


def resolve_workers(value: int | str | None, cores: int | None = None) -> int:
    """Loader worker count from `train.workers`: an integer >= 0, or `auto` / None for
    min(cores available, MAX_AUTO_WORKERS)."""
    if value is None or value == "auto":
        return min(cores if cores is not None else available_cores(), MAX_AUTO_WORKERS)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"train.workers: {value!r}, expected an integer >= 0 or auto")
    return value


def worker_context() -> multiprocessing.context.BaseContext:
    """The start method for loader workers, named explicitly: inside a joblib (loky) job the
    process-wide default is loky's, whose processes cannot run a DataLoader worker."""
    return multiprocessing.get_context("fork" if sys.platform == "linux" else "spawn")


def seed_worker(worker_id: int) -> None:
    """Seed a worker's numpy, `random` and the dataset's rng from torch's per-worker seed;
    turn OpenCV's own thread pool off (the workers are the parallelism)."""
    cv2.setNumThreads(0)
    seed = torch.initial_seed() % 2**32
    np.random.seed(seed)
    random.seed(seed)
    info = get_worker_info()
    if info is not None and hasattr(info.dataset, "reseed"):
        info.dataset.reseed(seed)


def build_dataloader(dataset: DetectionDataset, *, batch_size: int, workers: int | str | None, shuffle: bool,
                     seed: int, drop_last: bool = False, pin_memory: bool = False) -> DataLoader:
    """DataLoader yielding `(imgs uint8 (B,3,H,W), targets float32 (N,6), metas)`.

    `workers` as `resolve_workers` reads it; workers persist across epochs. `pin_memory` is
    for batches that go to CUDA; it also raises the prefetch to `CUDA_PREFETCH_FACTOR`
    batches per worker. With `dataset.rect` the order is the dataset's (batches of equal
    shape), so `shuffle` must be False and `batch_size` must be the dataset's.
    """
    if getattr(dataset, "rect", False):
        if shuffle:
            raise ValueError("build_dataloader: shuffle=True breaks rect batches; use shuffle=False with rect=True")
        if batch_size != dataset.batch_size:
            raise ValueError(f"build_dataloader: batch_size {batch_size} differs from the rect dataset's "
                             f"batch_size {dataset.batch_size}")
    workers = resolve_workers(workers)
    if workers == 0:
        cv2.setNumThreads(0)  # loading in-process shares the cores with torch (YOLOv5 sets it globally)
    generator = torch.Generator()
    generator.manual_seed(seed)
    order = RandomSampler(dataset, generator=generator) if shuffle else SequentialSampler(dataset)
    return DataLoader(
        dataset,
        batch_size=batch_size,
        sampler=SeededIndexSampler(order, generator),
        num_workers=workers,
        collate_fn=DetectionDataset.collate,
        pin_memory=pin_memory,
        drop_last=drop_last,
        worker_init_fn=seed_worker,
        generator=generator,
        persistent_workers=workers > 0,
        multiprocessing_context=worker_context() if workers > 0 else None,
        prefetch_factor=CUDA_PREFETCH_FACTOR if pin_memory and workers > 0 else None,
    )
