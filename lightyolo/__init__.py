"""lightyolo: ablation grids for lightweight YOLO detectors."""

import os

# Before torch loads its OpenMP runtime: threads waiting at the end of a parallel region sleep
# instead of spinning. Spinning threads starve a descheduled sibling on a busy or CPU-limited
# machine, and training ran 6-26x slower there (docs/threads.md). A user's own setting wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

__version__ = "0.1.0"
