"""Where a store lives and how processes share a SQLite one (docs/mlflow.md).

The default store is embedded: `mlflow.db` (SQLite) in the directory a command was started
from, always given to MLflow as an absolute URI so that no job's working directory can split
it. Parallel jobs on one SQLite file race on migrations and writes ("database is locked"),
so every write to a SQLite store goes through a file lock beside the database, and so does
the first touch of the store in each process (which creates and migrates a new database);
a tracking server (`mlflow server --backend-store-uri postgresql://…`) needs no lock.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator
from pathlib import Path

from filelock import FileLock
from mlflow.tracking import MlflowClient

# MLflow announces a new SQLite store's migrations on stderr; a bad-input error must stay one line.
logging.getLogger("mlflow.store.db.utils").setLevel(logging.WARNING)


def default_tracking_uri(base_dir: str | Path) -> str:
    """`sqlite:///<absolute base_dir>/mlflow.db`."""
    return f"sqlite:///{(Path(base_dir).expanduser().resolve() / 'mlflow.db').as_posix()}"


def sqlite_path(tracking_uri: str) -> Path | None:
    """The database file of a `sqlite:///` URI, else None."""
    prefix = "sqlite:///"
    return Path(tracking_uri[len(prefix) :]) if tracking_uri.startswith(prefix) else None


# One lock object per database (and process: a forked child must not use its parent's, which
# filelock refuses): FileLock is re-entrant per object (and per thread), so a block holding
# the lock can make a client, whose first use takes the lock again.
_STORE_LOCKS: dict[tuple[int, Path], FileLock] = {}
_READY_STORES: set[str] = set()  # SQLite URIs this process has opened under the lock


@contextlib.contextmanager
def store_lock(tracking_uri: str) -> Iterator[None]:
    """Serialise writes to a SQLite store (and its first opening, `open_client`) across
    processes; a no-op for servers."""
    db = sqlite_path(tracking_uri)
    if db is None:
        yield
        return
    db.parent.mkdir(parents=True, exist_ok=True)
    key = (os.getpid(), db)
    if key not in _STORE_LOCKS:
        _STORE_LOCKS[key] = FileLock(str(db) + ".lock", timeout=600)
    lock = _STORE_LOCKS[key]
    with lock:
        yield


def open_client(tracking_uri: str) -> MlflowClient:
    """A client of the store. A SQLite store is opened once per process under the store lock:
    MLflow creates and migrates a new database on first use, and two processes doing that at
    once corrupt it ("table _alembic_tmp_experiments already exists")."""
    if sqlite_path(tracking_uri) is None or tracking_uri in _READY_STORES:
        return MlflowClient(tracking_uri=tracking_uri)
    with store_lock(tracking_uri):
        client = MlflowClient(tracking_uri=tracking_uri)
        client.search_experiments(max_results=1)
    _READY_STORES.add(tracking_uri)
    return client
