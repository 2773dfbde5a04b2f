"""An official YOLOv5 checkpoint (`yolov5n.pt`, v6.x / v7.0 detection models) → the plain
state dict lightyolo loads (`model.weights=...`), without YOLOv5's code.

YOLOv5 saves its whole model object with pickle: loading it normally needs YOLOv5's `models`
package on the path and runs whatever the file names. Here YOLOv5's own classes (`models.*`,
`utils.*`) are read as inert stand-ins that only hold their attributes, torch's and a few
standard-library classes are allowed, and anything else in the file is refused by name
before it is built. Unpickling is still code from the file: convert only checkpoints you
trust (your own training, or the official release files).
"""

from __future__ import annotations

import pickle
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import torch

# What the file may build besides YOLOv5's own classes: torch's modules and tensors, and the
# containers and values a YOLOv5 checkpoint's bookkeeping (`opt`, `git`, `date`) holds.
ALLOWED_MODULE_PREFIXES = ("torch", "collections", "numpy", "pathlib", "argparse", "datetime")
ALLOWED_BUILTINS = {"set", "frozenset", "slice", "complex", "bytearray", "getattr"}
YOLOV5_PACKAGES = ("models", "utils")
# YOLOv5's first conv (model.0.conv) has 64 × width multiple output channels.
SCALE_BY_STEM_WIDTH = {16: "n", 32: "s", 48: "m"}


class CheckpointError(ValueError):
    """A file that is no YOLOv5 detection checkpoint lightyolo can convert (one line)."""


class YoloV5Object:
    """An inert stand-in for one of YOLOv5's own classes: it keeps the pickled attributes."""

    yolov5_class = ""

    def __setstate__(self, state: Any) -> None:
        if isinstance(state, tuple):  # (dict state, slot state)
            state = {**(state[0] or {}), **(state[1] or {})}
        self.__dict__.update(state)


class _RestrictedUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        package = module.split(".")[0]
        if package in YOLOV5_PACKAGES:
            return type(name, (YoloV5Object,), {"yolov5_class": f"{module}.{name}"})
        # torch pickles with protocol 2, which names the builtins module as Python 2 did
        if package in ALLOWED_MODULE_PREFIXES or (module in ("builtins", "__builtin__") and name in ALLOWED_BUILTINS):
            return super().find_class(module, name)
        raise CheckpointError(f"refusing to load {module}.{name}: a YOLOv5 checkpoint holds no such object")


def _pickle_module() -> ModuleType:
    """What `torch.load(pickle_module=...)` needs: pickle with the restricted Unpickler."""
    module = ModuleType("lightyolo_restricted_pickle")
    module.Unpickler = _RestrictedUnpickler
    module.load = pickle.load
    module.__name__ = "lightyolo_restricted_pickle"
    return module


def read_yolov5_checkpoint(path: str | Path) -> tuple[dict[str, torch.Tensor], str, int]:
    """The float32 state dict of the detection model in `path` (its EMA when saved, as YOLOv5
    loads it), its scale (n/s/m) and class count. CheckpointError names what is wrong."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such file")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=False, pickle_module=_pickle_module())
    except CheckpointError as err:
        raise CheckpointError(f"{path}: {err}") from None
    except Exception as err:  # not a torch file at all, truncated, ...
        raise CheckpointError(f"{path}: not a torch checkpoint ({type(err).__name__}: {str(err)[:200]})") from None
    model = checkpoint.get("ema") or checkpoint.get("model") if isinstance(checkpoint, dict) else None
    kind = getattr(model, "yolov5_class", "")
    if kind not in ("models.yolo.DetectionModel", "models.yolo.Model"):
        found = kind or type(model if model is not None else checkpoint).__name__
        raise CheckpointError(
            f"{path}: expected a YOLOv5 detection checkpoint (a dict whose 'model' is models.yolo.DetectionModel), found {found}"
        )
    state = dict(_tensors(model, ""))
    layers = state_layers(state)
    head = _module_at(model, f"model.{layers - 1}")
    if getattr(head, "yolov5_class", "") != "models.yolo.Detect":
        raise CheckpointError(f"{path}: its last layer is {getattr(head, 'yolov5_class', '?')}, expected models.yolo.Detect")
    stem = state.get("model.0.conv.weight")
    scale = SCALE_BY_STEM_WIDTH.get(int(stem.shape[0])) if stem is not None else None
    if scale is None:
        raise CheckpointError(f"{path}: not a YOLOv5 n/s/m model (first conv: {None if stem is None else tuple(stem.shape)})")
    return {key: value.float() for key, value in state.items()}, scale, int(head.nc)


def state_layers(state: dict[str, torch.Tensor]) -> int:
    return 1 + max(int(key.split(".")[1]) for key in state if key.startswith("model."))


def _children(module: Any) -> dict[str, Any]:
    return vars(module).get("_modules") or {}


def _module_at(root: Any, dotted: str) -> Any:
    for name in dotted.split("."):
        root = _children(root)[name]
    return root


def _tensors(module: Any, prefix: str) -> Iterator[tuple[str, torch.Tensor]]:
    """A module tree's parameters and persistent buffers under their state-dict names, read
    from the attributes nn.Module pickles (real torch modules and stand-ins alike)."""
    attributes = vars(module)
    transient = attributes.get("_non_persistent_buffers_set") or set()
    for name, tensor in (attributes.get("_parameters") or {}).items():
        if tensor is not None:
            yield prefix + name, tensor.detach()
    for name, tensor in (attributes.get("_buffers") or {}).items():
        if tensor is not None and name not in transient:
            yield prefix + name, tensor
    for name, child in _children(module).items():
        if child is not None:
            yield from _tensors(child, f"{prefix}{name}.")
