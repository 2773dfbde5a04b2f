"""A cell's checkpoints in the store, so that any machine can continue it (docs/cluster.md).

The output directory of a cell is a cache: a job requeued on another node, or a rerun after
the working directories were deleted, finds nothing there. So `last.pt` (and `best.pt` when
it changed) go onto the run as artifacts after every epoch (`CheckpointMirror`), through the
tracking server's artifact proxy when there is one (`mlflow server --serve-artifacts`), and a
resume looks for them in the run's recorded output directory first, then in the store
(`checkpoint_dir`).
"""

from __future__ import annotations

import logging
from pathlib import Path

from lightyolo.store.client import Store
from lightyolo.store.runs import RunTracker
from lightyolo.store.schema import WEIGHTS_DIR
from lightyolo.train.checkpoint import BEST, LAST

log = logging.getLogger(__name__)

LOCAL, STORE = "local", "store"  # values of schema.CHECKPOINT_SOURCE_TAG


class CheckpointMirror:
    """Called after each epoch's `last.pt` is written: logs it, and `best.pt` when it is new
    since the last call, onto the run under `weights/`."""

    def __init__(self, tracker: RunTracker, weights_dir: Path) -> None:
        self.tracker = tracker
        self.weights_dir = weights_dir
        self._sent: dict[str, int] = {}  # file name → mtime_ns of the copy in the store

    def __call__(self) -> None:
        for name in (BEST, LAST):
            path = self.weights_dir / name
            if not path.exists():
                continue
            stamp = path.stat().st_mtime_ns
            if self._sent.get(name) != stamp:
                self.tracker.log_artifact(path, WEIGHTS_DIR)
                self._sent[name] = stamp


def checkpoint_dir(store: Store, run_id: str, recorded: str | None, fallback: Path) -> tuple[Path, str] | None:
    """(output dir holding `weights/last.pt`, where it came from) for resuming run `run_id`:
    its recorded output dir when the file is there (same node or a shared filesystem), else
    `fallback` after fetching `last.pt` and `best.pt` from the store (LOCAL / STORE); None
    when neither has a `last.pt`."""
    if recorded and (Path(recorded) / WEIGHTS_DIR / LAST).exists():
        return Path(recorded), LOCAL
    if not store.has_artifact(run_id, f"{WEIGHTS_DIR}/{LAST}"):
        return None
    weights = fallback / WEIGHTS_DIR
    for name in (LAST, BEST):
        artifact = f"{WEIGHTS_DIR}/{name}"
        if name == LAST or store.has_artifact(run_id, artifact):
            fetched = store.download_artifact(run_id, artifact, weights)
            if fetched != weights / name:  # where MLflow puts it depends on the artifact repository
                fetched.replace(weights / name)
    log.info("run %s: checkpoints fetched from the store into %s (%s has none)", run_id, fallback, recorded)
    return fallback, STORE
