"""What each cell of a multirun leaves behind, and what the sweep as a whole reports back.

A cell writes `<sweep dir>/<job>/cell_result.json` whatever happens to it (`run.run_cell`);
the sweep callback reads them back for its summary (`lightyolo.sweep`), whose failures
become the command's exit status. Both sides import this module, not each other.
"""

from __future__ import annotations

import json
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

RESULT_FILE = "cell_result.json"


@dataclass
class CellResult:
    cell: str
    status: str  # completed / skipped / failed
    map50_95: float | None
    seconds: float
    run_id: str | None = None
    error: str | None = None

    def write(self, job_dir: Path) -> None:
        job_dir.mkdir(parents=True, exist_ok=True)
        (job_dir / RESULT_FILE).write_text(json.dumps(asdict(self)))


def read_results(sweep_dir: Path) -> list[CellResult]:
    """The result of every job under `sweep_dir`, in job order."""
    results = []
    for path in sorted(sweep_dir.glob(f"*/{RESULT_FILE}"), key=lambda p: _job_order(p.parent.name)):
        results.append(CellResult(**json.loads(path.read_text())))
    return results


def _job_order(name: str) -> tuple[int, str]:
    return (int(name), name) if name.isdigit() else (sys.maxsize, name)

