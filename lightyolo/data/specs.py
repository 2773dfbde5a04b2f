"""Hydra-instantiable dataset builders: `conf/dataset/*.yaml` name one of these as `_target_`
and `hydra.utils.instantiate(cfg.dataset)` returns a `DatasetSpec`.

- `yolo_dataset`: a YOLO-format folder (YOLOv5's layout, e.g. the shared coco128).
- `shapes_dataset`: the synthetic shapes set, generated and cached on first use.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Mapping
from pathlib import Path

import yaml

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
