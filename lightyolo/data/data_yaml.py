"""Read a YOLOv5 / Ultralytics `data.yaml`: the dataset root, the image files of each split,
and the class names.

The semantics are YOLOv5's (ultralytics/yolov5 v7.0, `check_dataset` and
`LoadImagesAndLabels`), with one difference that YOLOv5 itself cannot have:

- `path` is the dataset root. **A relative `path` resolves against the yaml's folder** (the
  Ultralytics rule when `path` is absent; YOLOv5 resolves it against its own checkout, which
  has no equivalent here); when no such folder exists there, against the current directory.
  No `path` means the yaml's folder. `root` (the `dataset.root` key) replaces `path`.
- `train`, `val` and optional `test` are each a directory (its images, recursively), a `.txt`
  file listing image paths, or a list of either; relative entries resolve against the root,
  and one starting with `../` that does not exist there is tried without it (YOLOv5's
  fallback, which Roboflow exports rely on). In a `.txt` list a `./`-prefixed line resolves
  against the list's own folder (YOLOv5's rule); other relative lines against the root.
- `names` is a list or an {index: name} mapping; `nc`, when present, must equal its length.

Every problem is one line naming the yaml and the key.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from lightyolo.data.yolo_format import IMAGE_SUFFIXES

log = logging.getLogger(__name__)

SPLIT_KEYS = ("train", "val", "test")
REQUIRED_KEYS = ("train", "val", "names")


@dataclass(frozen=True)
class DataYaml:
    """A parsed data.yaml: `splits[split]` are the resolved entries (directories or .txt
    lists) of each split present; `test` is absent when the yaml has none."""

    source: Path
    root: Path
    names: list[str]
    splits: dict[str, list[Path]]


def read_data_yaml(source: Path, root: str | Path | None = None) -> DataYaml:
    """Parse and resolve `source` (see the module docstring); `root` overrides its `path`."""
    source = Path(source).expanduser()
    if not source.is_file():
        raise FileNotFoundError(f"dataset.yaml: {source} not found (cwd {Path.cwd()}); "
                                "expected a YOLOv5 data.yaml with train, val and names")
    try:
        content = yaml.safe_load(source.read_text(encoding="utf-8"))
    except yaml.YAMLError as err:
        raise ValueError(f"{source}: not valid YAML ({' '.join(str(err).split())})") from None
    if not isinstance(content, dict):
        raise ValueError(f"{source}: expected a mapping with keys {', '.join(REQUIRED_KEYS)}, "
                         f"got {type(content).__name__}")
    for key in REQUIRED_KEYS:
        if content.get(key) in (None, "", []):
            raise ValueError(f"{source}: missing key '{key}' (a YOLOv5 data.yaml needs {', '.join(REQUIRED_KEYS)})")
    names = class_names(content["names"], f"{source}: names")
    if "nc" in content and content["nc"] != len(names):
        raise ValueError(f"{source}: nc is {content['nc']!r} but names lists {len(names)} classes")
    dataset_root = _dataset_root(source, content.get("path") if root is None else root)
    splits = {}
    for split in SPLIT_KEYS:
        value = content.get(split)
        if value in (None, "", []):
            continue
        entries = value if isinstance(value, list) else [value]
        if not all(isinstance(entry, str) and entry for entry in entries):
            raise ValueError(f"{source}: {split}: expected a path or a list of paths, got {value!r}")
        splits[split] = [_resolve_entry(dataset_root, entry, source, split) for entry in entries]
    return DataYaml(source=source, root=dataset_root, names=names, splits=splits)


def class_names(names: Any, where: str) -> list[str]:
    """Class names from a `names:` value: a list, or an {index: name} mapping over 0..n-1."""
    if isinstance(names, list) and names:
        return [str(n) for n in names]
    if isinstance(names, dict) and names:
        if sorted(names) != list(range(len(names))):
            raise ValueError(f"{where}: mapping keys must be 0..{len(names) - 1}, got {sorted(names)}")
        return [str(names[i]) for i in range(len(names))]
    raise ValueError(f"{where}: expected a non-empty list or index mapping, got {names!r}")


def split_image_files(entries: list[Path], source: Path, split: str, root: Path) -> list[Path]:
    """The image files of a split's entries, sorted (as YOLOv5 sorts them), each once."""
    files: list[Path] = []
    for entry in entries:
        if entry.is_dir():
            files += [p for p in entry.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()]
        else:
            files += _listed_images(entry, source, split, root)
    unique = sorted(set(files))
    if len(unique) < len(files):
        log.warning("%s: %s: %d image paths listed more than once; each kept once",
                    source, split, len(files) - len(unique))
    return unique


def _dataset_root(source: Path, path: Any) -> Path:
    if path in (None, ""):
        return source.parent.resolve()
    given = Path(str(path)).expanduser()
    if given.is_absolute():
        return given
    beside_yaml = (source.parent / given).resolve()
    if beside_yaml.is_dir() or not given.resolve().is_dir():
        return beside_yaml
    return given.resolve()


def _resolve_entry(root: Path, entry: str, source: Path, split: str) -> Path:
    resolved = (root / Path(entry).expanduser()).resolve()
    if not resolved.exists() and entry.startswith("../"):
        resolved = (root / entry[3:]).resolve()
    if not resolved.exists():
        raise FileNotFoundError(f"{source}: {split}: {root / entry} does not exist (dataset root {root})")
    if resolved.is_file() and resolved.suffix.lower() != ".txt":
        raise ValueError(f"{source}: {split}: {resolved} is neither a directory nor a .txt list of images")
    return resolved


def _listed_images(listing: Path, source: Path, split: str, root: Path) -> list[Path]:
    files: list[Path] = []
    for line_no, line in enumerate(listing.read_text(encoding="utf-8", errors="replace").splitlines(), start=1):
        line = line.strip()
        if not line:
            continue
        if line.startswith("./"):
            path = listing.parent / line[2:]
        else:
            path = Path(line).expanduser()
            path = path if path.is_absolute() else root / path
        if path.suffix.lower() not in IMAGE_SUFFIXES:
            log.warning("%s:%d: %r is not an image file name (%s of %s); skipped", listing, line_no, line,
                        split, source)
            continue
        files.append(path)
    return files
