"""Checking a store before using it: fail fast in one line, and readers never create stores
(docs/reliability.md)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from mlflow.tracking import MlflowClient

from lightyolo.store.environ import scoped_environ
from lightyolo.store.locks import sqlite_path, store_lock

STORE_CHECK_TIMEOUT_S = 5.0  # mlflow.store_check_timeout_s: how long a server has to answer
_SQLITE_HEADER = b"SQLite format 3\x00"


class StoreUnavailable(ValueError):
    """The tracking store cannot be used: one line naming it (a ValueError: the CLIs print it)."""


def check_store(tracking_uri: str, *, timeout_s: float | None = None, must_exist: bool = False) -> None:
    """Look at the store once, quickly, before anything is run or read: a SQLite file must be an
    intact MLflow database (missing is fine for a writer, which creates it, unless
    `must_exist`); a server must answer within `timeout_s` (one try, MLflow's retries off:
    otherwise a server that is down costs minutes of retries before the first error)."""
    db = sqlite_path(tracking_uri)
    if db is not None:
        if not db.exists():
            if must_exist:
                raise StoreUnavailable(f"no MLflow store at {db} (run a sweep there or pass tracking_uri=...)")
            return  # a writer creates it
        with store_lock(tracking_uri):  # not while another process creates and migrates it
            _check_sqlite_store(db)
        return
    timeout_s = STORE_CHECK_TIMEOUT_S if timeout_s is None else timeout_s
    with scoped_environ(MLFLOW_HTTP_REQUEST_MAX_RETRIES="0", MLFLOW_HTTP_REQUEST_TIMEOUT=str(max(1, round(timeout_s)))):
        try:
            MlflowClient(tracking_uri=tracking_uri).search_experiments(max_results=1)
        except Exception as err:  # MLflow's and the HTTP/DB driver's errors alike
            raise StoreUnavailable(
                f"MLflow tracking store {tracking_uri} does not answer ({_short_reason(err)}; "
                f"checked with a {timeout_s:g} s timeout, mlflow.store_check_timeout_s)"
            ) from None


def require_store(tracking_uri: str, *, timeout_s: float | None = None) -> None:
    """For readers (report, bench, export), which never create or write a store: ValueError in
    one line when a SQLite store is missing, empty, damaged or not MLflow's, or a server does
    not answer (`check_store`)."""
    check_store(tracking_uri, timeout_s=timeout_s, must_exist=True)


def _short_reason(err: Exception) -> str:
    text = str(err)
    for needle, reason in (("refused", "connection refused"), ("timed out", "timed out"),
                           ("Name or service not known", "unknown host"), ("ReadTimeout", "timed out")):
        if needle in text:
            return reason
    first = text.splitlines()[0] if text else type(err).__name__
    return first[:200]


def _check_sqlite_store(db: Path) -> None:
    if not db.is_file():
        raise StoreUnavailable(f"MLflow store {db}: not a file")
    if db.stat().st_size == 0:
        raise StoreUnavailable(f"MLflow store {db}: empty file (0 bytes), not an MLflow database; "
                               "restore it from a backup or point tracking_uri elsewhere")
    with open(db, "rb") as handle:
        if handle.read(len(_SQLITE_HEADER)) != _SQLITE_HEADER:
            raise StoreUnavailable(f"MLflow store {db}: not a SQLite database (its header is wrong)")
    try:
        connection = sqlite3.connect(f"{db.as_uri()}?mode=ro", uri=True, timeout=30)
        try:
            verdict = connection.execute("PRAGMA quick_check").fetchone()[0]
            tables = {row[0] for row in connection.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        finally:
            connection.close()
    except sqlite3.DatabaseError as err:
        raise StoreUnavailable(f"MLflow store {db}: damaged SQLite database ({err})") from None
    if verdict != "ok":
        raise StoreUnavailable(f"MLflow store {db}: damaged SQLite database (quick_check: {verdict})")
    if not {"experiments", "runs"} <= tables:
        raise StoreUnavailable(f"MLflow store {db}: a SQLite database without MLflow's tables")
