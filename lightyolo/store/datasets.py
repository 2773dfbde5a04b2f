"""A run's dataset as an MLflow input (the UI's Dataset column and filter): described, not
loaded — what `mlflow.data.meta_dataset.MetaDataset` records."""

from __future__ import annotations

import json
import time
from collections.abc import Mapping

from mlflow.entities import Dataset, DatasetInput, InputTag
from mlflow.exceptions import MlflowException

from lightyolo.store.client import Store

DIGEST_CHARS = 36  # MLflow's datasets.digest column is VARCHAR(36)
DATASET_ATTEMPTS = 3  # tries when parallel cells race to create the dataset row


def log_dataset_input(
    store: Store, run_id: str, *, name: str, digest: str, source: str, splits: Mapping[str, int],
    context: str = "train",
) -> None:
    """Log the dataset as an input of run `run_id`: the name, `digest` (a content fingerprint,
    cut to MLflow's 36 characters), the source path, and the split sizes as its profile, e.g.
    `{"train": 128, "val": 32}`."""
    dataset = Dataset(
        name=name,
        digest=digest[:DIGEST_CHARS],
        source_type="local",
        source=json.dumps({"uri": str(source)}),
        profile=json.dumps({split: int(n) for split, n in splits.items()}),
    )
    entry = DatasetInput(dataset, tags=[InputTag("mlflow.data.context", context)])
    for attempt in range(DATASET_ATTEMPTS):
        try:
            with store.lock():
                store.client.log_inputs(run_id, datasets=[entry])
            return
        except MlflowException as err:
            # A server inserts an experiment's dataset row once: two cells logging the
            # same new dataset at the same moment race on it, and the loser is refused
            # ("already exists"); asked again, the server links the existing row.
            if "already exists" not in str(err) or attempt + 1 == DATASET_ATTEMPTS:
                raise
            time.sleep(0.2 * (attempt + 1))
