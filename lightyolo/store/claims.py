"""Claim records: which process trains a cell (the rules are lightyolo/cell_claim.py's).

A claim record is an MLflow experiment with a unique name: every store (SQLite, a tracking
server on PostgreSQL or MySQL) creates an experiment name at most once, atomically (a unique
constraint), so creating one is a compare-and-set that needs no lock and no server change.
Its tags say who holds it (owner.host / owner.pid / owner.heartbeat, from the moment it is
created); releasing it deletes it (MLflow keeps a deleted name taken, so it is never won twice).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from mlflow.exceptions import MlflowException

from lightyolo.store.client import CLAIM_PREFIX, Store

__all__ = ["CLAIM_PREFIX", "ClaimRecord", "beat_claim_record", "create_claim_record", "read_claim_record",
           "release_claim_record"]


@dataclass(frozen=True)
class ClaimRecord:
    """A claim record as read back: its tags, and whether its holder released it."""

    tags: Mapping[str, str]
    released: bool


def create_claim_record(store: Store, name: str, tags: Mapping[str, str]) -> bool:
    """Create the claim record `name` with `tags`: True when this call created it, False when
    it already existed (held, released or lost to a concurrent claimer)."""
    with store.lock():
        try:
            store.client.create_experiment(
                name, artifact_location=store.artifact_root(".claims"), tags={k: str(v) for k, v in tags.items()}
            )
        except MlflowException as err:
            if err.error_code == "RESOURCE_ALREADY_EXISTS":
                return False
            raise
    return True


def read_claim_record(store: Store, name: str) -> ClaimRecord | None:
    """The claim record `name` (deleted ones included), or None when there is none."""
    experiment = store.client.get_experiment_by_name(name)
    if experiment is None:
        return None
    return ClaimRecord(dict(experiment.tags), experiment.lifecycle_stage != "active")


def beat_claim_record(store: Store, name: str, tags: Mapping[str, str]) -> None:
    """Update the holder's tags (its heartbeat) on a held claim record."""
    with store.lock():
        client = store.client
        experiment = client.get_experiment_by_name(name)
        if experiment is None or experiment.lifecycle_stage != "active":
            return
        for key, value in tags.items():
            client.set_experiment_tag(experiment.experiment_id, key, str(value))


def release_claim_record(store: Store, name: str) -> None:
    """Release a claim (delete its record; a released name stays taken)."""
    with store.lock():
        client = store.client
        experiment = client.get_experiment_by_name(name)
        if experiment is not None and experiment.lifecycle_stage == "active":
            client.delete_experiment(experiment.experiment_id)
