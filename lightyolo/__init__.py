"""lightyolo: ablation grids for lightweight YOLO detectors."""

__version__ = "0.1.0"
