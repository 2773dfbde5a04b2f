"""Where YOLOv5's Detect lived before heads became a config group (`lightyolo/models/heads/`).

Kept so that `from lightyolo.models.head import Detect` in users' code and notebooks still
works; new code imports `lightyolo.models.heads.v5`.
"""

from lightyolo.models.heads.v5 import YOLOV5_ANCHORS, Detect

__all__ = ["YOLOV5_ANCHORS", "Detect"]
