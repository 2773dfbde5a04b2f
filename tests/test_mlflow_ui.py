"""The MLflow UI as a person sees it: `mlflow ui` on a real store written by tracking.py,
opened in Debian's Chromium through Playwright (its own browser downloads cannot work here)."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from lightyolo.tracking import (
    RunTracker,
    cell_params,
    ensure_experiment,
    experiment_ui_url,
    log_onnx_model,
    source_tags,
    start_sweep_run,
)

from test_tracking import tiny_onnx

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
CELLS = {"c3-pan-conv-s0": 0.1234, "ghost-slim-conv-s0": 0.2345}


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


def smoke_sweep_store(uri: str, onnx_file: Path) -> tuple[str, str]:
    """A sweep as the pipeline logs one: a parent run, two cells nested under it, each with
    its dataset input, source tags, group params, final mAP and its ONNX export as a model.
    Returns (experiment id, parent run id)."""
    experiment_id = ensure_experiment(uri, "smoke")
    sweep = start_sweep_run(uri, "smoke", name="sweep-smoke", tags=source_tags("0123abc", "lightyolo.sweep"),
                            params={"grid": "backbone=c3,ghost neck=pan,slim"})
    for name, map50_95 in CELLS.items():
        backbone, neck, operator, _ = name.split("-")
        choices = {"backbone": backbone, "neck": neck, "operator": operator, "dataset": "shapes"}
        cell = RunTracker.start(
            uri, "smoke", run_name=name, tags={**choices, **source_tags("0123abc", "lightyolo.run")},
            params=cell_params({"seed": 0, "train": {"epochs": 1}}, choices), parent_run_id=sweep.run_id,
        )
        cell.log_dataset(name="shapes", digest="5eed0001", source="/data/shapes", splits={"train": 16, "val": 8})
        cell.log_metrics({"map50_95": map50_95, "map50": 2 * map50_95})
        log_onnx_model(uri, cell.run_id, onnx_file)
        cell.finish("completed")
    sweep.finish("completed")
    return experiment_id, sweep.run_id


def test_the_ui_shows_the_sweep_with_its_cells_datasets_and_map(
    tmp_path: Path, mlflow_ui: Callable[[str], str], browser_page
) -> None:
    experiment_id, _ = smoke_sweep_store(f"sqlite:///{tmp_path / 'mlflow.db'}", tiny_onnx(tmp_path / "model.onnx"))
    url = mlflow_ui(f"sqlite:///{tmp_path / 'mlflow.db'}")
    page = browser_page
    page.goto(experiment_ui_url(url, experiment_id))

    parent = page.get_by_role("row").filter(has_text="sweep-smoke")
    parent.wait_for()
    assert "/overview" not in page.url and "/runs" in page.url  # the runs table, not GenAI's
    # The cells are nested: hidden under the sweep until its row is expanded.
    for name in CELLS:
        assert page.get_by_role("row").filter(has_text=name).count() == 0
    parent.get_by_role("button").first.click()
    for name in CELLS:
        page.get_by_role("row").filter(has_text=name).wait_for()
    show_columns(page, "map50_95", "backbone")  # a metric and a group param (hidden at first)
    page.get_by_role("columnheader").filter(has_text="map50_95").first.wait_for()
    page.screenshot(path=tmp_path / "mlflow-ui.png")

    # The grid draws each run as two rows (the pinned name column, and the rest) with one row-id.
    for name, map50_95 in CELLS.items():
        row_id = page.get_by_role("row").filter(has_text=name).get_attribute("row-id")
        cells = page.locator(f'[role=row][row-id="{row_id}"]').all_inner_texts()
        shown = " ".join(cells)
        assert "shapes (5eed0001)" in shown  # the Dataset column: name (digest)
        assert f"{map50_95:.4f}" in shown and name.split("-")[0] in shown.split()
        assert "lightyolo.run" in shown  # the Source column
        assert "model" in shown.split()  # the Models column: the ONNX export
    assert (tmp_path / "mlflow-ui.png").stat().st_size > 10_000


def show_columns(page, *names: str) -> None:
    """Tick columns in the runs table's Columns menu, as a person would."""
    page.get_by_role("button", name="Columns").click()
    menu = page.get_by_role("dialog")
    for name in names:
        menu.get_by_placeholder("Search columns").fill(name)
        menu.get_by_text(name, exact=True).first.click()
    page.keyboard.press("Escape")
