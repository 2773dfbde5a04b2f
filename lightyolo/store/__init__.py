"""The tracking store: what the stages record in MLflow and read back, and the only package
that imports mlflow (docs/mlflow.md; tests/test_import_graph.py checks it).

- `schema`: every run kind, tag and metric name the stages exchange — start there.
- `client.Store`: one store bound to its URI (experiments, searches, artifacts).
- `runs.RunTracker`: writing one run; `queries`: reading runs back.
- `ownership`, `claims`: who trains a cell; `datasets`: a run's dataset input;
  `locks`, `health`: sharing a SQLite file and checking a store first; `ui`: MLflow's UI.
"""
