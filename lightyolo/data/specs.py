"""Hydra-instantiable dataset builders: `conf/dataset/*.yaml` name one of these as `_target_`
and `hydra.utils.instantiate(cfg.dataset)` returns a `DatasetSpec`.

- `yolo_dataset`: a YOLO-format folder (YOLOv5's layout, e.g. the shared coco128).
- `data_yaml_dataset`: a YOLOv5 / Ultralytics `data.yaml` (`dataset=yolo dataset.yaml=...`).
- `shapes_dataset`: the synthetic shapes set, generated and cached on first use.
- `coco_dataset`: an image folder + COCO json per split (COCO 2017 itself in COCO's or
  YOLOv5's layout, or any COCO-format dataset); evaluation then scores against the val json.

Every builder refuses a split that ends up empty (wrong path, empty folder, every image bad)
with one line naming the split and the path, before any training; `test` is optional.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Mapping
from pathlib import Path

from yaml import safe_load

from lightyolo.data.coco_json import DEFAULT_CACHE_DIR, read_coco_json, restrict_ground_truth
from lightyolo.data.data_yaml import class_names, read_data_yaml, split_image_files
from lightyolo.data.records import DatasetSpec, ImageRecord
from lightyolo.data.shapes import SHAPE_NAMES, ensure_shapes_dataset
from lightyolo.data.yolo_format import (ORPHAN_LABEL, label_path_for, read_yolo_images, read_yolo_split,
                                        report_orphan_labels)

log = logging.getLogger(__name__)

DEFAULT_IMAGE_CHECK_CACHE = "~/.cache/lightyolo/image_check"
# COCO 2017 as downloaded (root/train2017, ...) and as YOLOv5's get_coco.sh lays it out.
COCO_LAYOUTS = {
    "coco": "{split}2017",
    "yolov5": "images/{split}2017",
}
COCO_ANNOTATIONS = "annotations/instances_{split}2017.json"


def yolo_dataset(root: str, train: Mapping[str, str], val: Mapping[str, str],
                 names: list[str] | None = None, name: str = "yolo", test: Mapping[str, str] | None = None,
                 cache_dir: str | None = DEFAULT_IMAGE_CHECK_CACHE) -> DatasetSpec:
    """DatasetSpec of a YOLO-format folder.

    `train` / `val` / optional `test` hold `images` and `labels` directories relative to
    `root`; `root` is relative to the current directory (`~` expanded). `names=None` reads the
    class names from `root/data.yaml` (its `names:` mapping or list). `cache_dir` holds the
    image-check cache (null: check every image each time).
    """
    root_path = Path(root).expanduser()
    if not root_path.is_dir():
        raise FileNotFoundError(f"dataset.root: {root_path} is not a directory (cwd {Path.cwd()})")
    classes = list(names) if names is not None else read_class_names(root_path / "data.yaml")
    cache = Path(cache_dir).expanduser() if cache_dir is not None else None
    splits: dict[str, list[ImageRecord]] = {}
    issues: Counter = Counter()
    for split, dirs in (("train", train), ("val", val), ("test", test)):
        if dirs is None and split == "test":
            continue
        if not isinstance(dirs, Mapping) or not {"images", "labels"} <= set(dirs):
            raise ValueError(f"dataset.{split}: expected a mapping with keys 'images' and 'labels', got {dirs!r}")
        images_dir = root_path / dirs["images"]
        if not images_dir.is_dir():
            raise FileNotFoundError(f"dataset.{split}.images: {images_dir} is not a directory; "
                                    f"the {split} split is empty")
        records, split_issues = read_yolo_split(images_dir, root_path / dirs["labels"], len(classes),
                                                cache_dir=cache)
        splits[split] = _non_empty(records, split_issues, f"dataset.{split}", images_dir)
        issues.update({f"{split}/{key}": count for key, count in split_issues.items()})
    return _spec(name, classes, splits, issues)


def data_yaml_dataset(yaml: str | None, root: str | None = None, name: str | None = None,
                      cache_dir: str | None = DEFAULT_IMAGE_CHECK_CACHE) -> DatasetSpec:
    """DatasetSpec of a YOLOv5 / Ultralytics data.yaml (`lightyolo.data.data_yaml` gives the
    path rules); labels are found by YOLOv5's images→labels rule.

    `root` replaces the yaml's `path`; `name` defaults to the dataset root's folder name;
    `cache_dir` holds the image-check cache (null: check every image each time).
    """
    if not yaml:
        raise ValueError("dataset.yaml: required: the path of a YOLOv5 data.yaml "
                         "(dataset=yolo dataset.yaml=path/to/data.yaml)")
    described = read_data_yaml(Path(yaml), root)
    cache = Path(cache_dir).expanduser() if cache_dir is not None else None
    splits: dict[str, list[ImageRecord]] = {}
    issues: Counter = Counter()
    for split, entries in described.splits.items():
        image_paths = split_image_files(entries, described.source, split, described.root)
        label_paths = [label_path_for(p) for p in image_paths]
        records, split_issues = read_yolo_images(image_paths, label_paths, len(described.names), cache_dir=cache)
        for entry in (e for e in entries if e.is_dir()):
            labels_dir = label_path_for(entry / "x.jpg").parent
            if labels_dir != entry:  # labels beside the images: no separate folder to scan
                split_issues[ORPHAN_LABEL] += report_orphan_labels(labels_dir, label_paths, recursive=True)
        splits[split] = _non_empty(records, +split_issues, f"{described.source}: {split}",
                                   ", ".join(map(str, entries)))
        issues.update({f"{split}/{key}": count for key, count in (+split_issues).items()})
    return _spec(name or described.root.name, described.names, splits, issues)


def shapes_dataset(root: str = "~/.cache/lightyolo/shapes", num_train: int = 400, num_val: int = 100,
                   num_test: int = 100, image_size: int = 256, seed: int = 0, max_objects: int = 6,
                   name: str = "shapes") -> DatasetSpec:
    """DatasetSpec of the synthetic shapes set, generated under `root/<parameter hash>` once.

    `num_test=0` generates no test split."""
    folder = ensure_shapes_dataset(root, num_train=num_train, num_val=num_val, num_test=num_test,
                                   image_size=image_size, seed=seed, max_objects=max_objects)
    test = {"images": "images/test", "labels": "labels/test"} if num_test else None
    return yolo_dataset(str(folder), train={"images": "images/train", "labels": "labels/train"},
                        val={"images": "images/val", "labels": "labels/val"}, test=test,
                        names=list(SHAPE_NAMES), name=name, cache_dir=None)


def coco_dataset(root: str, train: Mapping[str, str] | None = None, val: Mapping[str, str] | None = None,
                 name: str = "coco", limit: int | None = None, cache_dir: str | None = str(DEFAULT_CACHE_DIR),
                 test: Mapping[str, str] | None = None, layout: str = "auto") -> DatasetSpec:
    """DatasetSpec of a COCO-json dataset.

    `train` / `val` / optional `test` hold `images` (a directory) and `annotations` (a COCO
    json), relative to `root` (itself relative to the current directory, `~` expanded). A
    split left null comes from COCO 2017's `layout`: "coco" (as downloaded:
    root/{split}2017, root/annotations/instances_{split}2017.json), "yolov5" (YOLOv5's:
    root/images/{split}2017, same annotations) or "auto" (whichever exists; the log says
    which); test is then used only when its instances json exists. Class names and
    `category_ids` come from the train json's categories (sorted by id; the other jsons must
    have the same); `val_coco_gt` / `test_coco_gt` are those jsons' own ground truth for the
    images kept. `limit` keeps the first N images (by file name) of each split, GT included:
    for smoke tests. `cache_dir` holds the parse cache of big jsons and the image-check cache
    (null: parse and check every time).
    """
    root_path = Path(root).expanduser()
    if not root_path.is_dir():
        raise FileNotFoundError(f"dataset.root: {root_path} is not a directory (cwd {Path.cwd()})")
    if limit is not None and (not isinstance(limit, int) or limit < 1):
        raise ValueError(f"dataset.limit: expected null or a positive integer, got {limit!r}")
    paths = {"train": train, "val": val, "test": test}
    if train is None or val is None:
        chosen = coco_layout(root_path, layout)
        for split in ("train", "val", "test"):
            if paths[split] is None:
                paths[split] = _layout_split(chosen, split)
        if test is None and not (root_path / paths["test"]["annotations"]).is_file():
            paths["test"] = None
    cache = Path(cache_dir).expanduser() if cache_dir is not None else None
    splits, categories, gts, issues = {}, {}, {}, Counter()
    for split, split_paths in paths.items():
        if split_paths is None:
            continue
        if not isinstance(split_paths, Mapping) or not {"images", "annotations"} <= set(split_paths):
            raise ValueError(f"dataset.{split}: expected a mapping with keys 'images' and 'annotations', "
                             f"got {split_paths!r}")
        images_dir = root_path / split_paths["images"]
        records, names, category_ids, gt, split_issues = read_coco_json(
            images_dir, root_path / split_paths["annotations"], cache_dir=cache, ground_truth=split != "train",
        )
        records = _non_empty(records, split_issues, f"dataset.{split}", images_dir,
                             f"for {root_path / split_paths['annotations']}")
        if limit is not None and len(records) > limit:
            records = records[:limit]
            if gt is not None:
                gt = restrict_ground_truth(gt, {record.image_id for record in records})
        splits[split], categories[split], gts[split] = records, (names, category_ids), gt
        issues.update({f"{split}/{key}": count for key, count in split_issues.items()})
    for split in ("val", "test"):
        if split in categories and categories[split] != categories["train"]:
            raise ValueError(f"dataset.{split}.annotations: its categories differ from dataset.train.annotations' "
                             f"({len(categories[split][1])} vs {len(categories['train'][1])} categories); "
                             "every split must share one class list")
    names, category_ids = categories["train"]
    spec = _spec(name, names, splits, issues, category_ids=category_ids)
    spec.val_coco_gt, spec.test_coco_gt = gts["val"], gts.get("test")
    return spec


def coco_layout(root: Path, layout: str = "auto") -> str:
    """Which COCO 2017 layout `root` has ("coco" or "yolov5"); one-line error when none."""
    if layout not in ("auto", *COCO_LAYOUTS):
        raise ValueError(f"dataset.layout: expected auto, {' or '.join(COCO_LAYOUTS)}, got {layout!r}")
    candidates = list(COCO_LAYOUTS) if layout == "auto" else [layout]
    for candidate in candidates:
        if all((root / path).exists() for split in ("train", "val")
               for path in _layout_split(candidate, split).values()):
            log.info("dataset.root %s: %s layout (%s, %s)", root, "COCO's own" if candidate == "coco" else "YOLOv5's",
                     COCO_LAYOUTS[candidate].format(split="{train,val}"), COCO_ANNOTATIONS.format(split="{train,val}"))
            return candidate
    expected = " or ".join(
        f"{name} ({root}/{COCO_LAYOUTS[name].format(split='{train,val}')} + "
        f"{root}/{COCO_ANNOTATIONS.format(split='{train,val}')})" for name in candidates)
    raise FileNotFoundError(f"dataset.root: {root} has no COCO 2017 layout: expected {expected}; "
                            "or set dataset.train / dataset.val to {images, annotations}")


def _layout_split(layout: str, split: str) -> dict[str, str]:
    return {"images": COCO_LAYOUTS[layout].format(split=split), "annotations": COCO_ANNOTATIONS.format(split=split)}


def _non_empty(records: list[ImageRecord], issues: Counter, split: str, where: Path | str,
               detail: str = "") -> list[ImageRecord]:
    """`records`, or the one-line refusal of a split with no usable image."""
    if records:
        return records
    bad = sum(count for key, count in issues.items() if key not in ("orphan_label", "empty_label_file"))
    reason = f"every image was left out ({dict(+issues)}; see the warnings above)" if bad else "no images found"
    raise ValueError(f"{split}: the split is empty: {where}{' ' + detail if detail else ''}: {reason}")


def _spec(name: str, names: list[str], splits: dict[str, list[ImageRecord]], issues: Counter,
          category_ids: list[int] | None = None) -> DatasetSpec:
    if issues:
        log.info("dataset %s: %s", name, dict(issues))
    return DatasetSpec(name=name, names=names, train=splits["train"], val=splits["val"], test=splits.get("test"),
                       category_ids=category_ids or [], issues=dict(issues))


def read_class_names(data_yaml: Path) -> list[str]:
    """Class names from a YOLO `data.yaml`: `names:` as a list or an {index: name} mapping."""
    if not data_yaml.is_file():
        raise FileNotFoundError(f"{data_yaml}: not found; pass dataset.names or add a data.yaml")
    names = (safe_load(data_yaml.read_text()) or {}).get("names")
    if names is None:
        raise ValueError(f"{data_yaml}: expected 'names:' as a non-empty list or index mapping")
    return class_names(names, f"{data_yaml}: names")
