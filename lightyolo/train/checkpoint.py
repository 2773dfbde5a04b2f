"""Training checkpoints: `last.pt` (everything needed to resume) and `best.pt` (weights).

Every checkpoint holds only tensors and plain Python values, so it loads with
`torch.load(path, weights_only=True)`: a checkpoint from elsewhere never runs code.
"""

from __future__ import annotations

import os
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

LAST = "last.pt"
BEST = "best.pt"


def capture_rng_state() -> dict[str, Any]:
    """Python, NumPy and torch RNG states as tensors and plain values."""
    np_state = np.random.get_state()
    state: dict[str, Any] = {
        "python": random.getstate(),
        "numpy_keys": torch.from_numpy(np_state[1].astype(np.int64)),
        "numpy_pos": int(np_state[2]),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: dict[str, Any]) -> None:
    random.setstate(_as_tuple(state["python"]))
    keys = state["numpy_keys"].numpy().astype(np.uint32)
    np.random.set_state(("MT19937", keys, state["numpy_pos"], 0, 0.0))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _as_tuple(value: Any) -> Any:
    """random.setstate needs tuples; a weights_only round trip may give lists."""
    return tuple(_as_tuple(v) for v in value) if isinstance(value, (list, tuple)) else value


class CheckpointWriteError(OSError):
    """A checkpoint could not be written (disk full, quota, permissions): one line naming it.
    The previous checkpoint is intact and no temporary file is left behind."""


def save_checkpoint(state: dict[str, Any], path: Path) -> None:
    """Write atomically: a run killed mid-write never leaves a truncated last.pt, and a failed
    write (ENOSPC …) removes its temporary file and raises CheckpointWriteError."""
    tmp = path.with_suffix(path.suffix + ".tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(tmp, "wb") as handle:  # a Python file: a failed write raises OSError with its errno
            torch.save(state, handle)
        os.replace(tmp, path)
    except (OSError, RuntimeError) as err:  # torch.save reports some write failures as RuntimeError
        tmp.unlink(missing_ok=True)
        reason = err.strerror if isinstance(err, OSError) and err.strerror else str(err).splitlines()[0]
        raise CheckpointWriteError(f"cannot write checkpoint {path}: {reason}") from None


def load_checkpoint(path: Path) -> dict[str, Any]:
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # a truncated or foreign file: say which one
        raise RuntimeError(f"cannot load checkpoint {path}: {exc}") from exc
