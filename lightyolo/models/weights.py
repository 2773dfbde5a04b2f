"""Loading weights into a Detector: YOLOv5's official state_dicts and lightyolo's own checkpoints.

YOLOv5 (ultralytics/yolov5 v6.0+/v7.0) names tensors `model.<i>.<rest>`: layers 0–9 are the
backbone, 10–23 the neck (the parameter-free Upsample and Concat take indices too), 24 is
Detect. Those layers map onto ours by structure: the k-th layer holding tensors in YOLOv5's
backbone (or neck) is the k-th layer holding tensors in ours, and `<rest>` names the same
tensor inside it because our blocks keep YOLOv5's attribute names. With the baseline
(c3/pan/conv at one scale) every tensor has a place, so YOLOv5n's checkpoint reproduces its
official outputs (tests, references in ../shared/weights/README.md).

Files are read with `torch.load(weights_only=True)` only: pickled code is never executed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from lightyolo.models.backbones.c3 import C3Backbone
from lightyolo.models.detector import Detector
from lightyolo.models.necks.pan import PANNeck

PARTS = ("backbone", "neck", "head")
# YOLOv5's layer indices → our part.
YOLOV5_BACKBONE_LAST, YOLOV5_NECK_LAST = 9, 23
# Keys under which lightyolo checkpoints hold a state_dict; EMA weights are the ones evaluated.
CHECKPOINT_KEYS = ("ema", "model")
# How many mismatches an error message lists.
SHOWN_MISMATCHES = 5

Place = tuple[str, int, str]  # (part, ordinal of the layer within the part, key inside the layer)


@dataclass
class WeightLoadReport:
    """What `load_weights` did: `transferred` of the model's `total` tensors were loaded."""

    source_format: str  # "yolov5" or "lightyolo"
    transferred: int
    total: int
    source_tensors: int
    not_loaded: list[str] = field(default_factory=list)  # model keys left at their init

    @property
    def complete(self) -> bool:
        return self.transferred == self.total

    def __str__(self) -> str:
        return (
            f"loaded {self.transferred}/{self.total} tensors from a {self.source_format} state_dict "
            f"({self.source_tensors} tensors in the file)"
        )


def load_weights(model: Detector, path: str | Path) -> WeightLoadReport:
    """Load a YOLOv5 or lightyolo state_dict into `model` (in place) and report what was transferred.

    The baseline structure (and a lightyolo checkpoint of the same model) must fit entirely:
    a tensor of the wrong shape is refused with a ValueError naming the first mismatches.
    Other structures get every tensor whose place and shape match.
    """
    state = _read_state_dict(Path(path))
    if _is_yolov5(state):
        source = {_yolov5_place(key, state): (key, value) for key, value in state.items()}
        target = {_model_place(model, key): key for key in model.state_dict()}
        fmt, strict = "yolov5", _is_yolov5_baseline(model) and source.keys() == target.keys()
    else:
        source = {key: (key, value) for key, value in state.items()}
        target = {key: key for key in model.state_dict()}
        fmt, strict = "lightyolo", source.keys() == target.keys()
    return _transfer(model, source, target, fmt, strict, Path(path))


def _read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    if not path.is_file():
        raise FileNotFoundError(f"weights file {path} does not exist")
    try:
        loaded = torch.load(path, weights_only=True, map_location="cpu")
    except Exception as error:  # torch raises UnpicklingError or RuntimeError for pickled objects
        raise ValueError(
            f"{path}: not a weights-only state_dict (a YOLOv5 .pt checkpoint pickles the model; convert "
            f"it: python -m lightyolo.import_yolov5 src={path} out=<file>): {str(error).splitlines()[0]}"
        ) from error
    if isinstance(loaded, dict):
        for key in CHECKPOINT_KEYS:
            if isinstance(loaded.get(key), dict):
                loaded = loaded[key]
                break
    if not (isinstance(loaded, dict) and loaded and all(isinstance(v, torch.Tensor) for v in loaded.values())):
        raise ValueError(
            f"{path}: expected a state_dict (name → tensor) or a dict holding one under {list(CHECKPOINT_KEYS)}"
        )
    return loaded


def _is_yolov5(state: dict[str, torch.Tensor]) -> bool:
    return all(key.startswith("model.") for key in state)


def _yolov5_place(key: str, state: dict[str, torch.Tensor]) -> Place:
    index, rest = _split_index(key.removeprefix("model."), key)
    if index > YOLOV5_NECK_LAST:
        return ("head", 0, rest)
    part, first = ("backbone", 0) if index <= YOLOV5_BACKBONE_LAST else ("neck", YOLOV5_BACKBONE_LAST + 1)
    last = YOLOV5_BACKBONE_LAST if part == "backbone" else YOLOV5_NECK_LAST
    # Ordinal among this part's layers that hold tensors (skips Upsample/Concat indices).
    holding = sorted({_split_index(k.removeprefix("model."), k)[0] for k in state})
    ordinal = [i for i in holding if first <= i <= last].index(index)
    return (part, ordinal, rest)


def _split_index(name: str, key: str) -> tuple[int, str]:
    head, _, rest = name.partition(".")
    if not head.isdigit() or not rest:
        raise ValueError(f"state_dict key {key!r}: expected YOLOv5's 'model.<layer index>.<name>'")
    return int(head), rest


def _layer_prefixes(part: nn.Module) -> list[str]:
    """Prefixes of the part's layers that hold tensors, in order; ModuleList/Sequential entries count singly."""
    prefixes = []
    for name, child in part.named_children():
        entries = (
            [(f"{name}.{n}", c) for n, c in child.named_children()]
            if isinstance(child, (nn.ModuleList, nn.Sequential))
            else [(name, child)]
        )
        prefixes += [prefix for prefix, module in entries if next(iter(module.state_dict()), None) is not None]
    return prefixes


def _model_place(model: Detector, key: str) -> Place:
    part, _, rest = key.partition(".")
    if part == "head":
        return ("head", 0, rest)
    for ordinal, prefix in enumerate(_layer_prefixes(getattr(model, part))):
        if rest.startswith(prefix + "."):
            return (part, ordinal, rest[len(prefix) + 1 :])
    return (part, -1, rest)


def _is_yolov5_baseline(model: Detector) -> bool:
    """YOLOv5's own layout: C3 backbone and PAN neck (not subclasses) built at one scale."""
    backbone, neck = model.backbone, model.neck
    return (
        type(backbone) is C3Backbone
        and type(neck) is PANNeck
        and (backbone.width_multiple, backbone.depth_multiple) == (neck.width_multiple, neck.depth_multiple)
    )


def _transfer(
    model: Detector,
    source: dict[Place | str, tuple[str, torch.Tensor]],
    target: dict[Place | str, str],
    source_format: str,
    strict: bool,
    path: Path,
) -> WeightLoadReport:
    state = model.state_dict()
    mismatches = []
    loaded = {}
    for place, model_key in target.items():
        if place not in source:
            continue
        source_key, value = source[place]
        if value.shape != state[model_key].shape:
            mismatches.append((source_key, model_key, tuple(state[model_key].shape), tuple(value.shape)))
            continue
        loaded[model_key] = value.to(dtype=state[model_key].dtype)
    if strict and mismatches:
        listed = "; ".join(
            f"{source_key} (model {model_key}): expected {expected}, got {got}"
            for source_key, model_key, expected, got in mismatches[:SHOWN_MISMATCHES]
        )
        raise ValueError(f"{path}: {len(mismatches)} tensors do not fit the model ({listed})")
    state.update(loaded)
    model.load_state_dict(state)
    return WeightLoadReport(
        source_format=source_format,
        transferred=len(loaded),
        total=len(state),
        source_tensors=len(source),
        not_loaded=[key for key in state if key not in loaded],
    )
