"""The backbone and neck seams (design.md, "Models"), beside the operator's
(`lightyolo.models.operators.SpatialOperator`).

A backbone maps an image to three maps (P3, P4, P5) and declares their channels and strides;
a neck maps those three maps to three maps at the same strides and declares its channels.
`build_detector` instantiates them with the arguments below and checks each built part with
`check_part`, so a new variant that breaks the seam fails at build with one line naming it.
"""

from __future__ import annotations

from typing import Any, Protocol

import torch
from torch import nn

from lightyolo.models.operators import SpatialOperator

Triple = tuple[int, int, int]
# The strides of P3, P4, P5 that YOLOv5's Detect head and its anchors assume.
STRIDES: Triple = (8, 16, 32)


class Backbone(Protocol):
    """Image (B, 3, H, W) → [P3, P4, P5] with `out_channels` channels at `strides`."""

    out_channels: Triple
    strides: Triple

    def __init__(
        self, width_multiple: float, depth_multiple: float, operator: SpatialOperator, **options: Any
    ) -> None: ...

    def __call__(self, x: torch.Tensor) -> list[torch.Tensor]: ...


class Neck(Protocol):
    """[P3, P4, P5] of `in_channels` → three maps of `out_channels` at the same `strides`."""

    out_channels: Triple
    strides: Triple

    def __init__(
        self,
        in_channels: Triple,
        width_multiple: float,
        depth_multiple: float,
        operator: SpatialOperator,
        **options: Any,
    ) -> None: ...

    def __call__(self, features: list[torch.Tensor]) -> list[torch.Tensor]: ...


class ContractError(TypeError):
    """A built backbone or neck does not keep the seam's contract."""


def declared_triple(module: nn.Module, group: str, attribute: str) -> Triple:
    """`module.<attribute>` checked to be 3 ints, else one line naming the class and the value."""
    value = getattr(module, attribute, None)
    if value is None:
        raise ContractError(
            f"conf/{group}: {type(module).__name__} does not declare {attribute} "
            f"(3 ints for P3, P4, P5; see lightyolo/models/contracts.py)"
        )
    if not (isinstance(value, (tuple, list)) and len(value) == 3 and all(isinstance(v, int) for v in value)):
        raise ContractError(
            f"conf/{group}: {type(module).__name__} must declare {attribute} as 3 ints "
            f"(P3, P4, P5), got {value!r}"
        )
    return tuple(value)  # type: ignore[return-value]


def check_parts(backbone: nn.Module, neck: nn.Module) -> tuple[Triple, Triple]:
    """The neck's (out_channels, strides), after checking both parts against their contract.

    Declarations are checked first; then one eval-mode forward of a zero image (twice the
    largest stride) checks that the maps have the declared channels and strides. Eval mode
    leaves BatchNorm's running statistics as they were."""
    backbone_channels = declared_triple(backbone, "backbone", "out_channels")
    strides = declared_triple(backbone, "backbone", "strides")
    neck_channels = declared_triple(neck, "neck", "out_channels")
    neck_strides = declared_triple(neck, "neck", "strides")
    if neck_strides != strides:
        raise ContractError(
            f"conf/neck: {type(neck).__name__} declares strides {neck_strides} but the backbone "
            f"{type(backbone).__name__} gives {strides}"
        )
    size = 2 * max(strides)
    modes = backbone.training, neck.training
    parameter = next(backbone.parameters(), None)
    image = torch.zeros(1, 3, size, size, device=parameter.device if parameter is not None else None)
    try:
        with torch.no_grad():
            features = backbone.eval()(image)
            _check_maps(backbone, "backbone", features, backbone_channels, strides, size)
            _check_maps(neck, "neck", neck.eval()(features), neck_channels, strides, size)
    finally:
        backbone.train(modes[0])
        neck.train(modes[1])
    return neck_channels, strides


def _check_maps(
    module: nn.Module, group: str, maps: list[torch.Tensor], channels: Triple, strides: Triple, size: int
) -> None:
    shapes = [tuple(m.shape[1:]) for m in maps]
    expected = [(c, size // s, size // s) for c, s in zip(channels, strides)]
    if shapes != expected:
        raise ContractError(
            f"conf/{group}: {type(module).__name__} declares out_channels {channels} at strides "
            f"{strides}, but a {size}×{size} forward gave (C, H, W) {shapes}, expected {expected}"
        )
