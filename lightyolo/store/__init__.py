"""What the stages record in MLflow and read back (the tracking store's layout)."""
