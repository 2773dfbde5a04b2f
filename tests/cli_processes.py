"""Real CLI processes for tests: `python -m lightyolo.run`'s `cli()` in children forked from the
test process (modules already imported, so a launch costs no interpreter start-up), released
together when a test needs them to race."""

from __future__ import annotations

import multiprocessing
import os
import sys
import time
from pathlib import Path

FORK = multiprocessing.get_context("fork")


def cli_child(argv: list[str], cwd: Path, log: Path, go) -> None:  # runs in the forked child
    fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    sys.stdout = sys.stderr = open(1, "w", buffering=1, closefd=False)  # not pytest's capture
    os.chdir(cwd)
    code = 0
    try:
        from lightyolo.run import cli

        sys.argv = ["lightyolo.run", *argv]
        go.wait()
        cli()
    except SystemExit as done:
        code = done.code if isinstance(done.code, int) else (0 if done.code is None else 1)
    except BaseException:  # noqa: BLE001 (the exit status says it; the log has the traceback)
        import traceback

        traceback.print_exc()
        code = 99
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


def launch_together(argv: list[str], cwd: Path, logs: list[Path]) -> list[int]:
    """Start one CLI process per log file, release them at once, and return their exit codes."""
    go = FORK.Event()
    children = [FORK.Process(target=cli_child, args=(argv, cwd, log, go)) for log in logs]
    for child in children:
        child.start()
    time.sleep(0.3)  # all forked and waiting
    go.set()
    for child in children:
        child.join(timeout=300)
    return [child.exitcode for child in children]
