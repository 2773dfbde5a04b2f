"""Whoever claims a cell first owns it: an atomic claim per cell identity (docs/reliability.md).

Looking a cell's runs up and creating its run are two steps; two launches of one cell used to
both find nothing and both train. Now a launch first *claims* the cell: it creates the claim
record `lightyolo-claim:<experiment id>:<identity>:g<generation>` (`store.claims`:
an experiment name, created at most once by any MLflow store), tagged with its owner (host,
pid, heartbeat) from that moment. The loser reads the record:

- held by a live owner (`store.ownership.owner_is_alive`: its pid on this host, else a heartbeat
  within the timeout) → "running elsewhere", nothing is created;
- released (its owner ended the run) or held by a dead owner → the next generation is
  claimed the same way, so of two reruns of a killed cell exactly one takes it over.

The holder beats the record with its run's heartbeat and releases it when the run ends.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Mapping
from dataclasses import dataclass

from lightyolo.store.claims import CLAIM_PREFIX, create_claim_record, read_claim_record
from lightyolo.store.client import Store
from lightyolo.store.ownership import HEARTBEAT_TIMEOUT_S, owner_is_alive, owner_tags
from lightyolo.store.schema import HEARTBEAT_TAG, OWNER_HOST_TAG, OWNER_PID_TAG

MAX_GENERATIONS = 10_000  # a cell taken over this often is a loop, not a workload


@dataclass(frozen=True)
class Claimed:
    """This process holds the cell (its claim record `name`)."""

    name: str


@dataclass(frozen=True)
class HeldElsewhere:
    """A live owner holds the cell: its claim record's owner tags."""

    name: str
    tags: Mapping[str, str]

    def describe(self, now: float | None = None) -> str:
        beat = float(self.tags.get(HEARTBEAT_TAG, "nan"))
        age = (time.time() if now is None else now) - beat
        return (f"running elsewhere: held by {self.tags.get(OWNER_HOST_TAG)} pid "
                f"{self.tags.get(OWNER_PID_TAG)} (heartbeat {age:.0f}s ago, claim {self.name})")


def claim_name(experiment_id: str, identity: str, generation: int) -> str:
    return f"{CLAIM_PREFIX}:{experiment_id}:{identity}:g{generation}"


def claim_cell(
    store: Store, experiment_id: str, identity: str, *, timeout_s: float = HEARTBEAT_TIMEOUT_S
) -> Claimed | HeldElsewhere:
    """Claim the cell `identity` of an experiment, or say who holds it (see the module docstring)."""
    host = socket.gethostname()
    generation = 0
    while generation < MAX_GENERATIONS:
        name = claim_name(experiment_id, identity, generation)
        if create_claim_record(store, name, owner_tags()):
            return Claimed(name)
        record = read_claim_record(store, name)
        if record is None:  # released and purged (`mlflow gc`) between the two calls: again
            continue
        if not record.released and owner_is_alive(
            record.tags, now=time.time(), host=host, timeout_s=timeout_s
        ):
            return HeldElsewhere(name, record.tags)
        generation += 1
    raise RuntimeError(f"cell {identity}: {MAX_GENERATIONS} claims taken over; giving up")
