"""`experiment=` names a folder under the artifact root: a name that would leave it stops the
CLI with one line on stderr and exit status 2, before any run, store or directory exists."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REPO


@pytest.mark.parametrize("mode", [[], ["-m"]], ids=["single run", "multirun"])
def test_an_experiment_name_with_a_path_is_refused_in_one_line(mode: list[str], tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "lightyolo.run", *mode, "experiment=../x",
         f"mlflow.tracking_uri=sqlite:///{tmp_path / 'mlflow.db'}",
         f"hydra.run.dir={tmp_path / 'run'}", f"hydra.sweep.dir={tmp_path / 'sweep'}"],
        cwd=tmp_path, capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 2, proc.stderr[-2000:]
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "experiment='../x'" in lines[0] and "Traceback" not in proc.stderr
    assert not (tmp_path / "mlflow.db").exists() and not (tmp_path.parent / "x").exists()
