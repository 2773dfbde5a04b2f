"""What MLflow's UI shows first, and the links lightyolo prints to it (docs/mlflow.md)."""

from __future__ import annotations

import json

from lightyolo.store import schema

EXPERIMENT_KIND_TAG = "mlflow.experimentKind"
# The kind MLflow's UI gives model-training experiments (its experiment-type selector). The
# 3.17 UI still lands where its per-browser GenAI / Model training switch says: see
# experiment_ui_url for a link that opens the runs table.
TRAINING_KIND = "custom_model_development"
# The runs-table view a printed UI link opens: MLflow's shared view state, an experiment tag
# `mlflow.sharedViewState.<key>` that a `viewStateShareKey=<key>` link applies.
SHARED_VIEW_KEY = "lightyolo"
SHARED_VIEW_TAG = f"mlflow.sharedViewState.{SHARED_VIEW_KEY}"
SHARED_VIEW_PARAM = "viewStateShareKey"
LOCAL_UI = "http://127.0.0.1:5000"  # where `mlflow ui` serves a local store by default


def experiment_tags() -> dict[str, str]:
    """The tags every lightyolo experiment carries: a model-training experiment, opening on
    the headline view."""
    return {EXPERIMENT_KIND_TAG: TRAINING_KIND, SHARED_VIEW_TAG: headline_view_state()}


def headline_view_state() -> str:
    """The runs-table view that lightyolo's UI links open (MLflow's shared view state, kept as
    an experiment tag): the answer's columns shown from the start, mAP by split first."""
    metrics = [schema.split_metric("test", "map50_95"), schema.split_metric("test", "map50"), schema.PARAMS_M,
               schema.GFLOPS_640, f"{schema.QUICK}/latency_ms", schema.split_metric("val", "map50_95")]
    columns = [*(f"metrics.`{name}`" for name in metrics), *(f"attributes.`{name}`" for name in ("Dataset", "Source", "Models"))]
    state = {
        "selectedColumns": columns, "columnOrder": columns,
        "columnWidths": {f"metrics.`{name}`": 140 for name in metrics},  # wide enough for the names
        "runsExpanded": {}, "runsPinned": [], "runsHidden": [],
        "runsVisibilityMap": {}, "runsHiddenMode": "FIRST_10_RUNS", "viewMaximized": False,
        "runListHidden": False, "isAccordionReordered": False, "useGroupedValuesInCharts": True,
        "hideEmptyCharts": True, "groupBy": None, "groupsExpanded": {}, "autoRefreshEnabled": True,
        "orderByKey": "attributes.start_time", "orderByAsc": False, "startTime": "ALL",
        "lifecycleFilter": "Active", "datasetsFilter": [], "modelVersionFilter": "All Runs", "searchFilter": "",
    }
    return json.dumps(state, sort_keys=True)


def ui_link(uri: str, experiment_id: str) -> str:
    """Where to look at an experiment: the tracking server's own UI, or for a local store
    `mlflow ui` at its default address (with the command that serves it)."""
    if uri.startswith(("http://", "https://")):
        return experiment_ui_url(uri, experiment_id)
    return f"{experiment_ui_url(LOCAL_UI, experiment_id)} (after: mlflow ui --backend-store-uri {uri})"


def experiment_ui_url(ui_url: str, experiment_id: str) -> str:
    """The MLflow UI's page of an experiment's runs table, for a server or `mlflow ui` at
    `ui_url`. MLflow 3.17's UI lands on the GenAI overview unless its GenAI / Model training
    switch (kept per browser) says otherwise; `workflowType=machine_learning` in the link does,
    so a printed link opens on the runs whatever the browser last chose."""
    return (f"{ui_url.rstrip('/')}/#/experiments/{experiment_id}/runs?workflowType=machine_learning"
            f"&{SHARED_VIEW_PARAM}={SHARED_VIEW_KEY}")
