"""build_dataloader: reproducible batches, rect safety."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from lightyolo.data.dataset import DetectionDataset
from lightyolo.data.loader import build_dataloader
from lightyolo.data.specs import shapes_dataset


@pytest.fixture(scope="module")
def shapes_train(tmp_path_factory):
    spec = shapes_dataset(str(tmp_path_factory.mktemp("shapes")), num_train=12, num_val=4, image_size=96, seed=1)
    return spec.train


def _first_batch(dataset, seed: int, workers: int = 0):
    loader = build_dataloader(dataset, batch_size=4, workers=workers, shuffle=True, seed=seed)
    return next(iter(loader))


def test_same_seed_gives_identical_first_batches_and_another_seed_differs(shapes_train):
    dataset = DetectionDataset(shapes_train, 64, augment=True)
    a, b = _first_batch(dataset, seed=5), _first_batch(dataset, seed=5)
    c = _first_batch(dataset, seed=6)
    assert a[0].shape == (4, 3, 64, 64) and a[1].shape[1] == 6
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert [m["image_id"] for m in a[2]] == [m["image_id"] for m in b[2]]
    assert not torch.equal(a[0], c[0])


def test_batches_do_not_depend_on_the_number_of_workers(shapes_train):
    dataset = DetectionDataset(shapes_train, 64, augment=True)
    in_process, with_workers = _first_batch(dataset, seed=3), _first_batch(dataset, seed=3, workers=2)
    assert torch.equal(in_process[0], with_workers[0]) and torch.equal(in_process[1], with_workers[1])


def test_epochs_differ_and_every_image_is_seen_once(shapes_train):
    dataset = DetectionDataset(shapes_train, 64, augment=False)
    loader = build_dataloader(dataset, batch_size=5, workers=0, shuffle=True, seed=0)
    epochs = [[m["image_id"] for _, _, metas in loader for m in metas] for _ in range(2)]
    assert sorted(epochs[0]) == sorted(epochs[1]) == sorted(r.image_id for r in shapes_train)
    assert epochs[0] != epochs[1]
    assert [len(imgs) for imgs, _, _ in loader] == [5, 5, 2]
    dropping = build_dataloader(dataset, batch_size=5, workers=0, shuffle=False, seed=0, drop_last=True)
    assert [len(imgs) for imgs, _, _ in dropping] == [5, 5]


def test_rect_datasets_refuse_shuffling_and_foreign_batch_sizes(shapes_train):
    dataset = DetectionDataset(shapes_train, 64, augment=False, rect=True, batch_size=4)
    with pytest.raises(ValueError, match="shuffle=True breaks rect batches"):
        build_dataloader(dataset, batch_size=4, workers=0, shuffle=True, seed=0)
    with pytest.raises(ValueError, match="batch_size 8 differs"):
        build_dataloader(dataset, batch_size=8, workers=0, shuffle=False, seed=0)
    shapes = {tuple(imgs.shape) for imgs, _, _ in build_dataloader(dataset, batch_size=4, workers=0,
                                                                    shuffle=False, seed=0)}
    assert shapes == {(4, 3, 96, 96)}  # square images: ceil(64 / 32 + pad 0.5) * 32, as YOLOv5
    assert np.all(dataset.batch_shapes % 32 == 0)


def test_workers_auto_uses_the_cores_available_capped_and_integers_pass_through():
    from lightyolo.data.loader import MAX_AUTO_WORKERS, resolve_workers

    assert resolve_workers("auto", cores=3) == 3 and resolve_workers(None, cores=64) == MAX_AUTO_WORKERS
    assert resolve_workers(0) == 0 and resolve_workers(5) == 5
    for bad in (-1, "four", 2.5, True):
        with pytest.raises(ValueError, match="train.workers"):
            resolve_workers(bad)


def test_loader_workers_persist_and_pinned_loaders_prefetch_more(shapes_train):
    from lightyolo.data.loader import CUDA_PREFETCH_FACTOR

    dataset = DetectionDataset(shapes_train, 64, augment=False)
    loader = build_dataloader(dataset, batch_size=4, workers=1, shuffle=False, seed=0, pin_memory=True)
    assert loader.persistent_workers and loader.prefetch_factor == CUDA_PREFETCH_FACTOR
    assert not build_dataloader(dataset, batch_size=4, workers=0, shuffle=False, seed=0).persistent_workers
