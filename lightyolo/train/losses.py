"""The training loss of a head: the head names its loss class, the run's settings configure it.

Every head declares `loss`, the dotted path of its loss class (`models/heads/__init__.py`):
YOLOv5's Detect trains with `train.loss.YoloLoss`, the anchor-free head with
`train.anchor_free_loss.AnchorFreeLoss`, and a user's head may name a class of their own. A
loss class has `item_names` (the three parts it reports, logged as `train/<name>`),
`from_settings(head, settings)` and is called as `loss(head output, targets (N, 6))` →
`(total, detached parts)`. Named by a string so that models/ never imports train/.
"""

from __future__ import annotations

import importlib
from typing import Any, Protocol

import torch
from torch import nn

from lightyolo.train.settings import TrainSettings


class DetectionLoss(Protocol):
    item_names: tuple[str, str, str]

    def __call__(self, preds: Any, targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]: ...


def loss_class(head: nn.Module) -> type:
    """The class `head.loss` names, imported; one line naming the head and the path otherwise."""
    path = getattr(head, "loss", None)
    name = type(head).__name__
    if not isinstance(path, str) or "." not in path:
        raise ValueError(f"head {name}: `loss` must name a loss class as 'package.module.Class', got {path!r}")
    module_name, _, class_name = path.rpartition(".")
    try:
        found = getattr(importlib.import_module(module_name), class_name)
    except (ImportError, AttributeError) as error:
        raise ValueError(f"head {name}: its loss {path!r} cannot be imported ({error})") from None
    if not hasattr(found, "from_settings") or not hasattr(found, "item_names"):
        raise ValueError(f"head {name}: its loss {path} has no from_settings(head, settings) or item_names")
    return found


def build_loss(head: nn.Module, settings: TrainSettings) -> DetectionLoss:
    """The loss `head` trains with, configured from `settings` (train.loss, img_size)."""
    return loss_class(head).from_settings(head, settings)
