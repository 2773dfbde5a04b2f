"""Parameter counts, by docs/references.md's convention: trainable parameters, BatchNorm unfused.

YOLOv5n has 1,872,157 and YOLOv5s 7,235,389 by this count (ultralytics/yolov5 v7.0). Weights
frozen by a module's design rather than by the user (a module with `frozen_by_design = True`:
the DFL's 16 bin values of the v8 head) count too, as ultralytics counts them: YOLOv8n has
3,157,200.
"""

from __future__ import annotations

from torch import nn


def count_parameters(model: nn.Module) -> int:
    """Trainable parameters of `model` as trained (BatchNorm not folded), plus the weights its
    modules freeze by design."""
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    by_design = sum(
        p.numel() for module in model.modules() if getattr(module, "frozen_by_design", False)
        for p in module.parameters() if not p.requires_grad
    )
    return trainable + by_design


def part_parameter_counts(model: nn.Module) -> dict[str, int]:
    """Trainable parameters of a detector's backbone, neck and head, and their total (docs/references.md's split)."""
    counts = {part: count_parameters(getattr(model, part)) for part in ("backbone", "neck", "head")}
    counts["total"] = sum(counts.values())
    return counts
