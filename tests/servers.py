"""Real MLflow servers for tests, on 127.0.0.1 and a free port: a PostgreSQL-backed
`mlflow server` (the team setup), and `mlflow ui` on a SQLite store (the browser test).

conftest.py loads this module as a plugin, so its fixtures serve every test. PostgreSQL
comes from `.ci/run`, which starts it and exports its URL in LIGHTYOLO_TEST_POSTGRES_URL;
without that variable the server tests skip and say why.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest

POSTGRES_ENV = "LIGHTYOLO_TEST_POSTGRES_URL"
START_TIMEOUT_S = 180.0  # a first start runs the store's migrations, on 2 shared cores
STOP_TIMEOUT_S = 3.0  # then SIGKILL (the test database is dropped WITH (FORCE) after it)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def mlflow_process(command: str, backend_uri: str, workdir: Path, *extra: str) -> Iterator[str]:
    """Run `mlflow <command>` (server or ui) on `backend_uri` until the block ends; yields its
    URL once `/health` answers. Its output goes to `workdir/mlflow-<command>.log`, whose
    tail a failed start quotes."""
    port = free_port()
    workdir.mkdir(parents=True, exist_ok=True)
    log_path = workdir / f"mlflow-{command}.log"
    args = [
        sys.executable, "-m", "mlflow", command, "--backend-store-uri", backend_uri,
        "--host", "127.0.0.1", "--port", str(port), "--workers", "1", *extra,
    ]
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            args, cwd=workdir, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True,  # its workers die with it
        )
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_until_healthy(url, proc, log_path)
        yield url
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:  # its graceful stop can take 10-20 s; nothing of it is needed after the test
            proc.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def _wait_until_healthy(url: str, proc: subprocess.Popen, log_path: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            break
        with contextlib.suppress(urllib.error.URLError, ConnectionError, TimeoutError):
            with urllib.request.urlopen(f"{url}/health", timeout=5) as answer:
                if answer.status == 200:
                    return
        time.sleep(0.5)
    tail = log_path.read_text(errors="replace")[-3000:]
    raise RuntimeError(f"mlflow at {url} did not answer (exit code {proc.poll()}); its log ends:\n{tail}")


@pytest.fixture(scope="session")
def postgres_store() -> Iterator[str]:
    """A fresh PostgreSQL database for this test session (dropped after it), as a URI."""
    base = os.environ.get(POSTGRES_ENV)
    if not base:
        pytest.skip(f"{POSTGRES_ENV} is not set: no PostgreSQL for the tracking-server tests (.ci/run starts one)")
    import psycopg2

    name = f"lightyolo_test_{uuid.uuid4().hex[:12]}"
    admin = psycopg2.connect(base)
    admin.autocommit = True
    try:
        with admin.cursor() as cur:
            cur.execute(f'CREATE DATABASE "{name}"')
        # SQLAlchemy 2.1 reads a bare postgresql:// as psycopg 3; the driver here is psycopg2.
        parts = urlsplit(base)._replace(scheme="postgresql+psycopg2", path=f"/{name}")
        yield urlunsplit(parts)
        with admin.cursor() as cur:
            cur.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
    finally:
        admin.close()


@pytest.fixture(scope="session")
def tracking_server(postgres_store: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """`mlflow server` on the session's PostgreSQL database, serving artifacts from a tmp
    folder (as a team runs it, on loopback here); yields `http://127.0.0.1:PORT`."""
    workdir = tmp_path_factory.mktemp("tracking-server")
    artifacts = workdir / "artifacts"
    with mlflow_process(
        "server", postgres_store, workdir,
        "--serve-artifacts", "--artifacts-destination", artifacts.as_uri(),
    ) as url:
        yield url


@pytest.fixture
def mlflow_ui(tmp_path: Path) -> Iterator[Callable[[str], str]]:
    """`mlflow_ui(store_uri)` starts `mlflow ui` on that store (stopped after the test) and
    returns its URL."""
    with contextlib.ExitStack() as stack:
        yield lambda store_uri: stack.enter_context(mlflow_process("ui", store_uri, tmp_path / "ui"))
