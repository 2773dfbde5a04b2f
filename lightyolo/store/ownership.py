"""Who owns a running run: its owner's host, pid and heartbeat (tags), and whether that owner
may still be working (docs/reliability.md). A rerun leaves a RUNNING run alone while its owner
lives."""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Callable, Mapping
from pathlib import Path

from lightyolo.store.schema import HEARTBEAT_TAG, OWNER_HOST_TAG, OWNER_PID_TAG

HEARTBEAT_TIMEOUT_S = 600.0  # no heartbeat for this long: the owner is taken to be gone
HEARTBEAT_INTERVAL_S = 60.0  # how often a running cell's heartbeat thread beats


def owner_tags(*, now: float | None = None) -> dict[str, str]:
    """This process as the owner of a running run: host, pid and a heartbeat (now)."""
    return {
        OWNER_HOST_TAG: socket.gethostname(),
        OWNER_PID_TAG: str(os.getpid()),
        HEARTBEAT_TAG: f"{time.time() if now is None else now:.3f}",
    }


def pid_alive(pid: int) -> bool:
    """Whether process `pid` runs on this machine (a zombie, killed but not reaped, does not)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # it exists, under another user
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True  # no /proc (not Linux): os.kill is all there is
    return stat.rsplit(")", 1)[-1].split()[0] != "Z"


def owner_is_alive(
    tags: Mapping[str, str],
    *,
    now: float,
    host: str,
    timeout_s: float = HEARTBEAT_TIMEOUT_S,
    pid_alive: Callable[[int], bool] = pid_alive,
) -> bool:
    """Whether the process that owns a RUNNING run (its `owner.*` tags) may still be working.

    The owner is gone when it recorded no heartbeat (a run from before ownership was
    recorded), when its last heartbeat is older than `timeout_s`, or when it ran on `host`
    (this machine) and its pid is dead. Another host's pid cannot be checked from here, so
    there the heartbeat alone decides.
    """
    try:
        beat = float(tags[HEARTBEAT_TAG])
    except (KeyError, ValueError):
        return False
    if now - beat > timeout_s:
        return False
    if tags.get(OWNER_HOST_TAG) == host:
        try:
            return pid_alive(int(tags[OWNER_PID_TAG]))
        except (KeyError, ValueError):
            return False
    return True
