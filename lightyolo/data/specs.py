"""Hydra-instantiable dataset builders: `conf/dataset/*.yaml` name one of these as `_target_`
and `hydra.utils.instantiate(cfg.dataset)` returns a `DatasetSpec`.

- `yolo_dataset`: a YOLO-format folder (YOLOv5's layout, e.g. the shared coco128).
- `shapes_dataset`: the synthetic shapes set, generated and cached on first use.
- `coco_dataset`: an image folder + COCO json per split (COCO 2017 itself, or any
  COCO-format dataset); evaluation then scores against the val json itself.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Mapping
from pathlib import Path

import yaml

from lightyolo.data.coco_json import DEFAULT_CACHE_DIR, read_coco_json, restrict_ground_truth
from lightyolo.data.records import DatasetSpec
from lightyolo.data.shapes import SHAPE_NAMES, ensure_shapes_dataset
from lightyolo.data.yolo_format import read_yolo_split

log = logging.getLogger(__name__)


def yolo_dataset(root: str, train: Mapping[str, str], val: Mapping[str, str],
                 names: list[str] | None = None, name: str = "yolo") -> DatasetSpec:
    """DatasetSpec of a YOLO-format folder.

    `train` / `val` hold `images` and `labels` directories relative to `root`; `root` is
    relative to the current directory (`~` expanded). `names=None` reads the class names from
    `root/data.yaml` (its `names:` mapping or list).
    """
    root_path = Path(root).expanduser()
    if not root_path.is_dir():
        raise FileNotFoundError(f"dataset.root: {root_path} is not a directory (cwd {Path.cwd()})")
    class_names = list(names) if names is not None else read_class_names(root_path / "data.yaml")
    splits = {}
    issues: Counter = Counter()
    for split, dirs in (("train", train), ("val", val)):
        if not isinstance(dirs, Mapping) or not {"images", "labels"} <= set(dirs):
            raise ValueError(f"dataset.{split}: expected a mapping with keys 'images' and 'labels', got {dirs!r}")
        records, split_issues = read_yolo_split(root_path / dirs["images"], root_path / dirs["labels"],
                                                len(class_names))
        if not records:
            raise ValueError(f"dataset.{split}: no readable images in {root_path / dirs['images']}")
        splits[split] = records
        issues.update({f"{split}/{key}": count for key, count in split_issues.items()})
    if issues:
        log.info("dataset %s: %s", name, dict(issues))
    return DatasetSpec(name=name, names=class_names, train=splits["train"], val=splits["val"],
                       issues=dict(issues))


def shapes_dataset(root: str = "~/.cache/lightyolo/shapes", num_train: int = 400, num_val: int = 100,
                   image_size: int = 256, seed: int = 0, max_objects: int = 6,
                   name: str = "shapes") -> DatasetSpec:
    """DatasetSpec of the synthetic shapes set, generated under `root/<parameter hash>` once."""
    folder = ensure_shapes_dataset(root, num_train=num_train, num_val=num_val,
                                   image_size=image_size, seed=seed, max_objects=max_objects)
    return yolo_dataset(str(folder), train={"images": "images/train", "labels": "labels/train"},
                        val={"images": "images/val", "labels": "labels/val"},
                        names=list(SHAPE_NAMES), name=name)


def coco_dataset(root: str, train: Mapping[str, str], val: Mapping[str, str], name: str = "coco",
                 limit: int | None = None, cache_dir: str | None = str(DEFAULT_CACHE_DIR)) -> DatasetSpec:
    """DatasetSpec of a COCO-json dataset.

    `train` / `val` hold `images` (a directory) and `annotations` (a COCO json), relative to
    `root` (itself relative to the current directory, `~` expanded). Class names and
    `category_ids` come from the train json's categories (sorted by id; the val json must
    have the same); `val_coco_gt` is the val json's own ground truth for the images kept.
    `limit` keeps the first N images (by file name) of each split, GT included: for smoke
    tests. `cache_dir` holds the parse cache of big jsons (null: parse every time).
    """
    root_path = Path(root).expanduser()
    if not root_path.is_dir():
        raise FileNotFoundError(f"dataset.root: {root_path} is not a directory (cwd {Path.cwd()})")
    if limit is not None and (not isinstance(limit, int) or limit < 1):
        raise ValueError(f"dataset.limit: expected null or a positive integer, got {limit!r}")
    cache = Path(cache_dir).expanduser() if cache_dir is not None else None
    splits, categories, issues, val_gt = {}, {}, Counter(), None
    for split, paths in (("train", train), ("val", val)):
        if not isinstance(paths, Mapping) or not {"images", "annotations"} <= set(paths):
            raise ValueError(f"dataset.{split}: expected a mapping with keys 'images' and 'annotations', got {paths!r}")
        records, names, category_ids, gt, split_issues = read_coco_json(
            root_path / paths["images"], root_path / paths["annotations"], cache_dir=cache,
            ground_truth=split == "val",
        )
        if not records:
            raise ValueError(f"dataset.{split}: no images of {root_path / paths['annotations']} found in "
                             f"{root_path / paths['images']}")
        if limit is not None and len(records) > limit:
            records = records[:limit]
            if gt is not None:
                gt = restrict_ground_truth(gt, {record.image_id for record in records})
        splits[split], categories[split] = records, (names, category_ids)
        if split == "val":
            val_gt = gt
        issues.update({f"{split}/{key}": count for key, count in split_issues.items()})
    if categories["train"] != categories["val"]:
        raise ValueError(f"dataset.val.annotations: its categories differ from dataset.train.annotations' "
                         f"({len(categories['val'][1])} vs {len(categories['train'][1])} categories); "
                         "both splits must share one class list")
    if issues:
        log.info("dataset %s: %s", name, dict(issues))
    names, category_ids = categories["train"]
    return DatasetSpec(name=name, names=names, train=splits["train"], val=splits["val"],
                       category_ids=category_ids, val_coco_gt=val_gt, issues=dict(issues))


def read_class_names(data_yaml: Path) -> list[str]:
    """Class names from a YOLO `data.yaml`: `names:` as a list or an {index: name} mapping."""
    if not data_yaml.is_file():
        raise FileNotFoundError(f"{data_yaml}: not found; pass dataset.names or add a data.yaml")
    names = (yaml.safe_load(data_yaml.read_text()) or {}).get("names")
    if isinstance(names, list) and names:
        return [str(n) for n in names]
    if isinstance(names, dict) and names:
        if sorted(names) != list(range(len(names))):
            raise ValueError(f"{data_yaml}: names keys must be 0..{len(names) - 1}, got {sorted(names)}")
        return [str(names[i]) for i in range(len(names))]
    raise ValueError(f"{data_yaml}: expected 'names:' as a non-empty list or index mapping")
