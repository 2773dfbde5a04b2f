"""Cell identity (issue 11, part 1): the cases where the old config_hash was wrong.

A different dataset under another root, other weights under the same path and other code
give another hash; threads, device, workers, caches, bench settings, tracking and the
launcher do not. The configs are the real ones Hydra composes; the datasets are real
coco128 images and labels read by the real YOLO reader.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest
from omegaconf import OmegaConf, open_dict

from lightyolo import identity
from lightyolo.data.specs import yolo_dataset

from conftest import COCO128, compose_config, tiny_overrides


def resolved(overrides: list[str]) -> dict[str, Any]:
    """The resolved config of `python -m lightyolo.run <overrides>`, Hydra's node dropped."""
    cfg = compose_config(overrides)
    with open_dict(cfg):
        del cfg["hydra"]
    return OmegaConf.to_container(cfg, resolve=True)


def cell_hash(config: dict[str, Any], *, data: str = "d0", weights: str | None = None,
              code: str | None = "c0") -> str:
    return identity.config_hash(
        config, dataset_fingerprint=data, weights_digest=weights, code_identity=code
    )


def coco128_subset(root: Path, names: list[str]) -> Path:
    """A YOLO-format folder holding the given coco128 images and their labels."""
    for sub in ("images/train2017", "labels/train2017"):
        (root / sub).mkdir(parents=True)
    for name in names:
        shutil.copy(COCO128 / "images/train2017" / name, root / "images/train2017" / name)
        label = COCO128 / "labels/train2017" / (Path(name).stem + ".txt")
        if label.exists():
            shutil.copy(label, root / "labels/train2017" / label.name)
    shutil.copy(COCO128 / "data.yaml", root / "data.yaml")
    return root


def spec_of(root: Path):
    split = {"images": "images/train2017", "labels": "labels/train2017"}
    return yolo_dataset(str(root), train=split, val=split, name="coco128")


@pytest.fixture(scope="module")
def images() -> list[str]:
    return sorted(p.name for p in (COCO128 / "images/train2017").glob("*.jpg"))


@pytest.mark.shared("data/coco128")
def test_another_dataset_root_with_other_images_is_another_cell(tmp_path, images) -> None:
    a = spec_of(coco128_subset(tmp_path / "A", images[:20]))
    b = spec_of(coco128_subset(tmp_path / "B", images[20:40]))
    config_a = resolved(["dataset=coco128", f"dataset.root={tmp_path / 'A'}", "train.epochs=0"])
    config_b = resolved(["dataset=coco128", f"dataset.root={tmp_path / 'B'}", "train.epochs=0"])
    fp_a, fp_b = identity.dataset_fingerprint(a), identity.dataset_fingerprint(b)
    assert fp_a != fp_b
    assert cell_hash(config_a, data=fp_a) != cell_hash(config_b, data=fp_b)
    # The same files under another root are the same dataset: the root is not identity.
    copy = spec_of(coco128_subset(tmp_path / "A_copy", images[:20]))
    assert identity.dataset_fingerprint(copy) == fp_a
    config_copy = resolved(["dataset=coco128", f"dataset.root={tmp_path / 'A_copy'}",
                            "train.epochs=0"])
    assert cell_hash(config_copy, data=fp_a) == cell_hash(config_a, data=fp_a)


@pytest.mark.shared("data/coco128")
def test_an_edited_label_changes_the_fingerprint(tmp_path, images) -> None:
    root = coco128_subset(tmp_path / "A", images[:5])
    before = identity.dataset_fingerprint(spec_of(root))
    label = sorted((root / "labels/train2017").glob("*.txt"))[0]
    lines = label.read_text().splitlines()
    label.write_text("\n".join(lines[:-1]) + "\n")  # one box fewer
    assert identity.dataset_fingerprint(spec_of(root)) != before


def test_files_fingerprint_sees_names_and_sizes(tmp_path) -> None:
    a, b = tmp_path / "a.jpg", tmp_path / "b.jpg"
    a.write_bytes(b"x" * 10)
    b.write_bytes(b"y" * 10)
    first = identity.files_fingerprint([a, b])
    assert identity.files_fingerprint([b, a]) == first  # order-free
    b.write_bytes(b"y" * 11)
    assert identity.files_fingerprint([a, b]) != first
    with pytest.raises(FileNotFoundError, match="missing.jpg is not a file"):
        identity.files_fingerprint([tmp_path / "missing.jpg"])


def test_weights_with_the_same_path_but_other_content_are_another_cell(tmp_path) -> None:
    weights = tmp_path / "w.pt"
    weights.write_bytes(b"first weights")
    config = resolved(tiny_overrides(tmp_path) + [f"model.weights={weights}"])
    first = identity.weights_digest(weights)
    weights.write_bytes(b"other weights, same path")
    second = identity.weights_digest(weights)
    assert first != second
    assert cell_hash(config, weights=first) != cell_hash(config, weights=second)
    # The same content under another path is the same cell: the path is not identity.
    moved = tmp_path / "moved.pt"
    moved.write_bytes(weights.read_bytes())
    config_moved = resolved(tiny_overrides(tmp_path) + [f"model.weights={moved}"])
    assert identity.weights_digest(moved) == second
    assert cell_hash(config_moved, weights=second) == cell_hash(config, weights=second)
    with pytest.raises(FileNotFoundError, match="model.weights: .*nope.pt is not a file"):
        identity.weights_digest(tmp_path / "nope.pt")


def test_code_identity_follows_the_sources(tmp_path) -> None:
    package = tmp_path / "pkg"
    package.mkdir()
    (package / "a.py").write_text("x = 1\n")
    before = identity.code_identity(package)
    edited = tmp_path / "pkg2"
    shutil.copytree(package, edited)
    assert identity.code_identity(edited) == before  # same sources, same identity
    (edited / "a.py").write_text("x = 2\n")
    after = identity.code_identity(edited)
    assert after != before and after.startswith(identity.lightyolo.__version__ + "+src.")
    config = resolved(tiny_overrides(tmp_path))
    assert cell_hash(config, code=before) != cell_hash(config, code=after)
    # reuse_across_code: the hash without code matches across code versions.
    assert cell_hash(config, code=None) == cell_hash(config, code=None)
    assert identity.code_identity() == identity.code_identity()  # the installed package


def test_execution_settings_do_not_change_the_cell(tmp_path) -> None:
    base = tiny_overrides(tmp_path)
    reference = cell_hash(resolved(base))
    for extra in (
        ["train.threads=7"], ["train.device=cpu"], ["train.workers=5"],
        ["train.cache_images=false"], ["bench.iters=200", "bench.warmup=3"],
        [f"mlflow.tracking_uri=sqlite:///{tmp_path / 'other.db'}"], ["experiment=elsewhere"],
        ["rerun=true"], ["reuse_across_code=true"], [f"dataset.root={tmp_path / 'moved'}"],
    ):
        assert cell_hash(resolved(base + extra)) == reference, extra


def test_what_changes_a_result_changes_the_cell(tmp_path) -> None:
    base = tiny_overrides(tmp_path)
    reference = cell_hash(resolved(base))
    for extra in (["train.epochs=2"], ["train.lr0=0.02"], ["seed=1"], ["neck=slim"],
                  ["train.augment.fliplr=0.0"], ["eval.iou_thres=0.7"]):
        assert cell_hash(resolved(base + extra)) != reference, extra


def test_variant_hash_is_the_identity_minus_the_seed(tmp_path) -> None:
    base = tiny_overrides(tmp_path)
    seeds = [resolved(base + [f"seed={s}"]) for s in (0, 1)]
    kwargs = dict(dataset_fingerprint="d", weights_digest=None, code_identity="c")
    assert identity.variant_hash(seeds[0], **kwargs) == identity.variant_hash(seeds[1], **kwargs)
    assert identity.variant_key(seeds[0]) == identity.variant_key(seeds[1])
    longer = resolved(base + ["train.epochs=3"])
    assert identity.variant_key(longer) != identity.variant_key(seeds[0])
    assert identity.variant_hash(longer, **kwargs) != identity.variant_hash(seeds[0], **kwargs)


@pytest.mark.shared("data/coco128")
def test_cell_identity_gathers_the_parts_and_the_lookup_follows_the_reuse_key(tmp_path, images) -> None:
    spec = spec_of(coco128_subset(tmp_path / "A", images[:3]))
    weights = tmp_path / "w.pt"
    weights.write_bytes(b"weights")
    config = resolved(["dataset=coco128", f"dataset.root={tmp_path / 'A'}",
                       f"model.weights={weights}"])
    cell = identity.cell_identity(config, spec, config["model"]["weights"])
    assert cell.dataset_fingerprint == identity.dataset_fingerprint(spec)
    assert cell.weights_digest == identity.weights_digest(weights)
    assert cell.config_hash == identity.config_hash(
        config, dataset_fingerprint=cell.dataset_fingerprint,
        weights_digest=cell.weights_digest, code_identity=identity.code_identity())
    assert cell.lookup == ("config_hash", cell.config_hash)
    assert cell.tags()["reuse_across_code"] == "false"
    reused = identity.cell_identity({**config, "reuse_across_code": True}, spec, weights)
    assert reused.lookup == ("recipe_hash", cell.recipe_hash)  # same cell, code left out
    assert reused.config_hash == cell.config_hash
    no_weights = identity.cell_identity({**config, "model": {**config["model"], "weights": None}},
                                        spec, None)
    assert no_weights.tags()["weights_digest"] == "none"
