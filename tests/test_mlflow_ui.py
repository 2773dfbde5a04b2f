"""The MLflow UI as a person sees it: a real smoke sweep (two tiny cells, Hydra multirun in a
subprocess, SQLite store), then `mlflow ui` on that store, opened in Debian's Chromium through
Playwright (its own browser downloads cannot work here)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest


from conftest import REPO
from lightyolo.store.client import Store
from lightyolo.store.ui import experiment_ui_url

CHROMIUM = Path("/usr/bin/chromium")
# Headless as root, and quiet: without the background-networking flags Chromium keeps
# calling hosts that this closed network refuses (env/machines/python.md).
CHROMIUM_FLAGS = [
    "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]
# The UI opens its assistant panel on a first visit; closed, the runs table gets the width.
QUIET_UI = "localStorage.setItem('mlflow.assistant.panelOpen_v1', 'false');" \
           "localStorage.setItem('mlflow.assistant.fab.autoOpenedOnFirstLoad_v1', 'true');"
# Two cells, about a minute each: the smoke grid cut to one backbone, trained long enough to
# score above zero on test (so the test and val columns can be told apart by their values).
SWEEP = {"backbone": "c3", "neck": "pan,slim", "train.epochs": 12, "train.batch_size": 8, "train.img_size": 96,
         "dataset.num_train": 128, "dataset.num_val": 16, "dataset.num_test": 16, "eval.batch_size": 16,
         "bench.iters": 2}
CELLS = ("c3-pan-conv-s0", "c3-slim-conv-s0")


@pytest.fixture
def browser_page() -> Iterator:
    if not os.access(CHROMIUM, os.X_OK):
        pytest.skip(f"no {CHROMIUM} (Debian's chromium package; .ci/run installs it)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_FLAGS)
        page = browser.new_page(viewport={"width": 1800, "height": 560})
        page.add_init_script(QUIET_UI)
        page.set_default_timeout(60_000)
        yield page
        browser.close()


@pytest.fixture(scope="module")
def smoke_store(tmp_path_factory: pytest.TempPathFactory) -> str:
    """The store of a real `python -m lightyolo.sweep smoke` over two tiny cells."""
    root = tmp_path_factory.mktemp("ui_sweep")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    proc = subprocess.run(
        [sys.executable, "-m", "lightyolo.sweep", "smoke", *(f"{k}={v}" for k, v in SWEEP.items()),
         f"mlflow.tracking_uri={uri}", f"hydra.sweep.dir={root / 'smoke'}", f"dataset.root={root / 'shapes'}"],
        cwd=REPO, capture_output=True, text=True, timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return uri


def test_the_ui_shows_the_sweep_with_its_cells_and_their_map(
    smoke_store: str, tmp_path: Path, mlflow_ui: Callable[[str], str], browser_page
) -> None:
    runs = Store(smoke_store).runs_frame("smoke")
    (sweep,) = runs[runs["tags.kind"] == "sweep"].itertuples()
    cells = runs[runs["tags.mlflow.parentRunId"] == sweep.run_id].set_index("run_name")
    assert sorted(cells.index) == sorted(CELLS)
    experiment_id = Store(smoke_store).ensure_experiment("smoke")  # exists: its id
    page = browser_page
    page.goto(experiment_ui_url(mlflow_ui(smoke_store), experiment_id))

    parent = page.get_by_role("row").filter(has_text=sweep.run_name)
    parent.wait_for()
    assert "/overview" not in page.url and "/runs" in page.url  # the runs table, not GenAI's
    # The cells are nested: hidden under the sweep until its row is expanded.
    for name in CELLS:
        assert page.get_by_role("row").filter(has_text=name).count() == 0
    parent.get_by_role("button").first.click()
    for name in CELLS:
        page.get_by_role("row").filter(has_text=name).wait_for()
    # The link lightyolo prints opens the table with the answer's columns: none added by hand.
    page.get_by_role("columnheader").filter(has_text="test/map50_95").first.wait_for()
    page.screenshot(path=tmp_path / "mlflow-ui.png")
    assert cells["metrics.test/map50_95"].max() > 0  # learned something: the columns differ

    # The grid draws each run as two rows (the pinned name column, and the rest) with one row-id.
    for name in CELLS:
        row_id = page.get_by_role("row").filter(has_text=name).get_attribute("row-id")
        shown = " ".join(page.locator(f'[role=row][row-id="{row_id}"]').all_inner_texts()).split()
        assert shows_number(shown, cells.loc[name, "metrics.test/map50_95"])  # the test mAP50-95 column
        text = " ".join(shown)
        assert f"{cells.loc[name, 'tags.dataset']} (" in text  # the Dataset column: name (digest)
        assert "lightyolo.run" in text  # the Source column (mlflow.source.name)
        assert "model" in shown  # the Models column: the ONNX export of the sweep's bench stage
    assert (tmp_path / "mlflow-ui.png").stat().st_size > 10_000


def shows_number(shown: list[str], value: float) -> bool:
    """Whether the row shows `value` (the runs table prints metrics to 4 decimals or in full)."""
    def number(text: str) -> float | None:
        try:
            return float(text.rstrip("…"))
        except ValueError:
            return None
    return any(n is not None and abs(n - float(value)) < 5e-5 for n in map(number, shown))
