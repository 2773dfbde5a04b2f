"""The ablation report: MLflow runs → tables (markdown, CSV) and tradeoff plots.

`collect` reads runs, `aggregate` computes variants / deltas / Pareto flags, `tables` and
`plots` render them, `cli` (`python -m lightyolo.report`, `write_report`) ties them together.
"""
