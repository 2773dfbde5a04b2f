"""The identity of a grid cell: what a result depends on, as pure functions.

A cell's `config_hash` covers exactly what changes its numbers (docs/design.md, "Identity of a
cell"): the resolved config minus the execution keys below, plus a fingerprint of the
dataset's content, the digest of the weights file and the code's identity. Two runs with the
same hash are the same experiment; a different dataset under the same name, other weights
under the same path, or other code are never "already completed". The `variant_hash` is the
same identity minus the seed: one report row.

Execution keys say where or how a run executes, never what it computes, so moving a sweep
to another machine, launcher or thread count keeps its completed cells.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import lightyolo
from lightyolo.configs import GROUPS
from lightyolo.data.records import DatasetSpec, ImageRecord
from lightyolo.store import schema
from lightyolo.store.runs import flat_config

# Config keys (dotted prefixes) left out of the identity, by why they cannot change a result.
EXECUTION_KEYS: tuple[str, ...] = (
    # launcher and Hydra's own node (run/sweep dirs, callbacks, job numbers)
    "hydra",
    # where runs are recorded and what the sweep is called
    "mlflow", "experiment",
    # whether to redo or reuse completed cells (the reuse key itself included)
    "rerun", "reuse_across_code",
    # where the data and weights live, and parse caches: their content is fingerprinted
    "dataset.root", "dataset.yaml", "dataset.cache_dir", "train.cache_images", "model.weights",
    # hardware and parallelism: threads, device, data-loader workers
    "train.threads", "train.device", "train.workers",
    # latency measurement settings: they change the bench numbers' precision, not the model
    "bench",
)
# Keys added after cells had been run, at the value that reproduces those runs: left out of the
# identity while they hold it, so the cells run before keep their hash (issue 26: the head group;
# head=v5 is the model every earlier cell trained).
IMPLICIT_DEFAULTS: dict[str, Any] = {"head._target_": "lightyolo.models.heads.v5.Detect"}
SEED_KEY = "seed"
# The config key that keeps completed cells across code versions (default false); a run logs
# it as a tag of the same name.
REUSE_KEY = schema.REUSE_ACROSS_CODE_TAG
DIGEST_CHARS = 16
_CHUNK = 1 << 20


def is_execution_key(key: str, execution_keys: Iterable[str] = EXECUTION_KEYS) -> bool:
    """True when dotted `key` is one of `execution_keys` or lies under one."""
    return any(key == prefix or key.startswith(prefix + ".") for prefix in execution_keys)


def identity_items(config: Mapping[str, Any], *, with_seed: bool = True) -> dict[str, Any]:
    """The flat config keys that enter the identity (execution keys dropped; the seed too
    unless `with_seed`). Accepts a nested config or an already flat {dotted: value} mapping
    (MLflow params), so the report can recompute a run's variant from its params. The group
    choice params a run logs beside its config (`backbone=c3`, `store.runs.cell_params`) are
    no config items: the group's own keys (`backbone._target_`, ...) carry the choice. Keys at
    their IMPLICIT_DEFAULTS value are left out (the default head)."""
    flat = flat_config(config)
    return {
        key: value for key, value in sorted(flat.items())
        if not is_execution_key(key) and key not in GROUPS and (with_seed or key != SEED_KEY)
        and not (key in IMPLICIT_DEFAULTS and IMPLICIT_DEFAULTS[key] == value)
    }


def _digest(payload: Any) -> str:
    text = json.dumps(payload, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:DIGEST_CHARS]


def config_hash(
    config: Mapping[str, Any], *, dataset_fingerprint: str, weights_digest: str | None,
    code_identity: str | None,
) -> str:
    """The identity of one cell (16 hex chars).

    `code_identity=None` leaves the code out: the hash a run is looked up by when
    `reuse_across_code=true` (tag it `recipe_hash`).
    """
    return _digest({
        "config": identity_items(config),
        "dataset": dataset_fingerprint,
        "weights": weights_digest,
        "code": code_identity,
    })


def variant_hash(
    config: Mapping[str, Any], *, dataset_fingerprint: str, weights_digest: str | None,
    code_identity: str | None,
) -> str:
    """The identity minus the seed: the runs of one report row share it."""
    return _digest({
        "config": identity_items(config, with_seed=False),
        "dataset": dataset_fingerprint,
        "weights": weights_digest,
        "code": code_identity,
    })


def variant_key(config: Mapping[str, Any]) -> str:
    """The config part of a variant's identity (no fingerprints): a digest of the identity
    items minus the seed; equal for two configs that differ in seed or execution keys only."""
    return _digest(identity_items(config, with_seed=False))


def _records_payload(records: Iterable[ImageRecord]) -> list[list[Any]]:
    """File name, size on disk, image size and the parsed boxes of each record: a changed
    image file or label changes the payload; reading the records parsed the labels already."""
    payload = []
    for record in sorted(records, key=lambda r: str(r.path)):
        path = Path(record.path)
        size = path.stat().st_size if path.exists() else -1
        boxes = hashlib.sha256(record.boxes.tobytes() + record.classes.tobytes()).hexdigest()
        payload.append([path.name, size, record.width, record.height, boxes])
    return payload


def dataset_fingerprint(spec: DatasetSpec) -> str:
    """Content fingerprint of a DatasetSpec: class names and ids, and per split each image's
    file name and byte size with its parsed boxes and classes (the test split's too, when
    there is one), plus the digests of the val and test COCO ground truths when the dataset
    has them (crowd regions, areas). The root path is not in
    it: the same files under another root give the same fingerprint. A stat per image (about
    a second for COCO's 118k images), no pixel is read."""
    payload = {
        "names": list(spec.names),
        "category_ids": list(spec.category_ids),
        "train": _records_payload(spec.train),
        "val": _records_payload(spec.val),
        "val_coco_gt": _digest(spec.val_coco_gt) if spec.val_coco_gt is not None else None,
    }
    if spec.test is not None:  # keyed only when present: a dataset without one keeps its cells
        payload["test"] = _records_payload(spec.test)
        payload["test_coco_gt"] = _digest(spec.test_coco_gt) if spec.test_coco_gt is not None else None
    return _digest(payload)


def files_fingerprint(paths: Iterable[str | Path]) -> str:
    """Fingerprint of a set of files from their names and byte sizes (no content read): for
    a dataset given as folders of images and labels before any reader has parsed it."""
    entries = []
    for path in map(Path, paths):
        if not path.is_file():
            raise FileNotFoundError(f"files_fingerprint: {path} is not a file")
        entries.append([path.name, path.stat().st_size])
    return _digest(sorted(entries))


def weights_digest(path: str | Path) -> str:
    """sha256 of a weights file's content (16 hex chars), cached per (path, size, mtime)."""
    path = Path(path).expanduser().resolve()
    if not path.is_file():
        raise FileNotFoundError(f"model.weights: {path} is not a file")
    stat = path.stat()
    return _file_sha256(str(path), stat.st_size, stat.st_mtime_ns)


@lru_cache(maxsize=64)
def _file_sha256(path: str, size: int, mtime_ns: int) -> str:
    sha = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(_CHUNK):
            sha.update(chunk)
    return sha.hexdigest()[:DIGEST_CHARS]


def code_identity(package_dir: str | Path | None = None) -> str:
    """`<version>+src.<digest>`: the package version and a digest of its .py sources.

    A digest of the sources rather than the git sha: it changes exactly when the code does
    (a README-only commit does not retrain a grid; two different uncommitted edits are not
    the same "dirty" state), and it works for an installed package with no git checkout.
    Record the git sha beside it (tag `git_sha`) to find the commit.
    """
    directory = Path(package_dir) if package_dir is not None else Path(lightyolo.__file__).parent
    root = directory.resolve()
    sources = tuple(
        (path.relative_to(root).as_posix(), path.stat().st_size, path.stat().st_mtime_ns)
        for path in sorted(root.rglob("*.py")) if "__pycache__" not in path.parts
    )
    return f"{lightyolo.__version__}+src.{_sources_digest(str(root), sources)}"


@lru_cache(maxsize=8)
def _sources_digest(root: str, sources: tuple[tuple[str, int, int], ...]) -> str:
    """Digest of the sources' names and bytes; cached while no file's size or mtime moves."""
    sha = hashlib.sha256()
    for name, _, _ in sources:
        sha.update(name.encode() + b"\0")
        sha.update((Path(root) / name).read_bytes() + b"\0")
    return sha.hexdigest()[:12]


@dataclass(frozen=True)
class CellIdentity:
    """Everything a run is identified by, and the tags that record it."""

    config_hash: str  # the cell: look a completed run up by this
    recipe_hash: str  # the cell without the code: looked up instead when reuse_across_code
    variant_hash: str  # the cell minus the seed: one report row
    code_identity: str
    dataset_fingerprint: str
    weights_digest: str | None
    reuse_across_code: bool

    @property
    def lookup(self) -> tuple[str, str]:
        """(tag, value) a completed run of this cell is found by."""
        if self.reuse_across_code:
            return schema.RECIPE_HASH_TAG, self.recipe_hash
        return schema.CONFIG_HASH_TAG, self.config_hash

    def tags(self) -> dict[str, str]:
        return {
            schema.CONFIG_HASH_TAG: self.config_hash,
            schema.RECIPE_HASH_TAG: self.recipe_hash,
            schema.VARIANT_HASH_TAG: self.variant_hash,
            schema.CODE_IDENTITY_TAG: self.code_identity,
            schema.DATASET_FINGERPRINT_TAG: self.dataset_fingerprint,
            schema.WEIGHTS_DIGEST_TAG: self.weights_digest or "none",
            schema.REUSE_ACROSS_CODE_TAG: str(self.reuse_across_code).lower(),
        }


def cell_identity(config: Mapping[str, Any], spec: DatasetSpec,
                  weights: str | Path | None) -> CellIdentity:
    """The identity of the cell `config` describes, with its dataset and weights file."""
    fingerprint = dataset_fingerprint(spec)
    digest = weights_digest(weights) if weights else None
    code = code_identity()
    return CellIdentity(
        config_hash=config_hash(config, dataset_fingerprint=fingerprint, weights_digest=digest, code_identity=code),
        recipe_hash=config_hash(config, dataset_fingerprint=fingerprint, weights_digest=digest, code_identity=None),
        variant_hash=variant_hash(config, dataset_fingerprint=fingerprint, weights_digest=digest, code_identity=code),
        code_identity=code,
        reuse_across_code=bool(config.get(REUSE_KEY, False)),
        dataset_fingerprint=fingerprint,
        weights_digest=digest,
    )
