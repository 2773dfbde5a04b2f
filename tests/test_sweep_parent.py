"""What a sweep's parent run records of the grid, and the UI link a sweep prints at its end
(the parent run itself, on real stores: test_sweep_server.py, test_mlflow_ui.py)."""

from __future__ import annotations

from lightyolo.sweep import sweep_grid
from lightyolo.store.ui import ui_link


def test_the_grid_is_the_sweep_files_params_with_the_command_lines_sweeps() -> None:
    params = {"backbone": "c3,ghost", "neck": "pan,slim"}
    assert sweep_grid([], params) == params
    # A fixed value of a swept key narrows it; a new sweep joins; a plain override is no grid.
    overrides = ["backbone=c3", "seed=0,1", "train.epochs=1", "hydra/launcher=joblib"]
    assert sweep_grid(overrides, params) == {"backbone": "c3", "neck": "pan,slim", "seed": "0,1"}


def test_the_ui_link_is_the_servers_or_mlflow_ui_for_a_local_store() -> None:
    assert ui_link("http://10.0.0.5:5000", "7") == (
        "http://10.0.0.5:5000/#/experiments/7/runs?workflowType=machine_learning&viewStateShareKey=lightyolo"
    )
    local = ui_link("sqlite:////data/mlflow.db", "3")
    assert local.startswith("http://127.0.0.1:5000/#/experiments/3/runs?workflowType=machine_learning")
    assert "mlflow ui --backend-store-uri sqlite:////data/mlflow.db" in local
