"""The contract a backbone, a neck and an operator keep (docs/design.md, "Models"), checked when
the detector is built, so that a variant that breaks it — a built-in or a user's module named
by a plugin yaml's `_target_` — fails with one line naming its class and what it lacks.

- Operator (`lightyolo.models.operators.SpatialOperator`): built from its yaml's keys alone;
  called as `operator(channels, kernel_size, *, depthwise, act)` at every site a block asks
  for its C→C stride-1 spatial op, it returns an nn.Module keeping (B, C, H, W).
- Backbone (`Backbone`): an nn.Module built as `cls(width_multiple=, depth_multiple=,
  operator=, **yaml keys)`; maps (B, 3, H, W) to [P3, P4, P5] and declares their
  `out_channels` and `strides` (3 ints each; the strides (8, 16, 32) of YOLOv5's anchors).
- Neck (`Neck`): an nn.Module built as `cls(in_channels=<the backbone's out_channels>,
  width_multiple=, depth_multiple=, operator=, **yaml keys)`; maps the three maps to three
  maps at the same strides and declares `out_channels` and `strides`.

- Head (`lightyolo/models/heads/__init__.py`): an nn.Module built as `cls(nc=, in_channels=<the
  neck's out_channels>, strides=<the neck's strides>, **yaml keys)`; exposes `nc`, a `stride`
  tensor (one value per level) and `loss`, the dotted path of its training loss class.

`build_detector` checks, in order: each `_target_` imports; its signature takes the arguments
the build gives plus the yaml's keys (`check_arguments`, before instantiating, so no multi-line
Hydra error); the operator answers a probe (`check_operator`); the built parts' declarations
and a forward of a zero image (`declared_triple`, `check_parts`).
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Mapping
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
    """A backbone, neck or operator (its config or the built part) does not keep the contract."""


def target_object(config: Mapping[str, Any], group: str) -> Any:
    """The object a part's `_target_` names, imported; one line naming the target otherwise."""
    target = config.get("_target_") if isinstance(config, Mapping) else None
    if not isinstance(target, str) or not target:
        raise ContractError(f"conf/{group}: expected a mapping with a `_target_` (the class to build), got {config!r}")
    parts = target.split(".")
    for split in range(len(parts) - 1, 0, -1):  # the longest importable module prefix
        module_name = ".".join(parts[:split])
        try:
            found: Any = importlib.import_module(module_name)
        except ModuleNotFoundError as error:
            if error.name is None or not f"{module_name}.".startswith(f"{error.name}."):
                raise ContractError(f"conf/{group}: importing {module_name} for _target_ {target}: {error}") from None
            continue  # this prefix is not a module: try a shorter one
        except Exception as error:  # the user's module itself fails to import
            raise ContractError(
                f"conf/{group}: importing {module_name} for _target_ {target}: {type(error).__name__}: {error}"
            ) from None
        for attribute in parts[split:]:
            if not hasattr(found, attribute):
                raise ContractError(f"conf/{group}: _target_ {target}: {found.__name__} has no {attribute!r}")
            found = getattr(found, attribute)
        return found
    raise ContractError(
        f"conf/{group}: _target_ {target}: no module {parts[0]!r} (is its folder on PYTHONPATH, or its package installed?)"
    )


def check_arguments(config: Mapping[str, Any], group: str, **given: Any) -> None:
    """The `_target_`'s signature takes the build's arguments `given` plus the yaml's keys,
    and they fill every required parameter; else one line naming the class and the argument."""
    target = target_object(config, group)
    if config.get("_partial_", False):
        return
    options = {str(key): value for key, value in config.items() if not str(key).startswith("_")}
    try:
        signature = inspect.signature(target)
    except (TypeError, ValueError):  # no introspectable signature (a builtin): instantiate decides
        return
    try:
        signature.bind(*config.get("_args_", ()), **{**options, **given})
    except TypeError as error:
        name = getattr(target, "__qualname__", str(target))
        parameters = ", ".join(str(p.replace(annotation=inspect.Parameter.empty)) for p in signature.parameters.values())
        from_build = ", ".join(given) or "nothing"
        from_yaml = ", ".join(options) or "nothing"
        raise ContractError(
            f"conf/{group}: {name}({parameters}): {error} (the build passes {from_build}; the yaml gives {from_yaml})"
        ) from None


def check_module(part: Any, group: str) -> None:
    """A built backbone or neck is an nn.Module (the detector registers it as a submodule)."""
    if not isinstance(part, nn.Module):
        raise ContractError(f"conf/{group}: {type(part).__name__} is not a torch nn.Module")


def check_operator(operator: Any, channels: int = 16, size: int = 8) -> None:
    """The built operator keeps the SpatialOperator protocol: asked for a dense and a depthwise
    3×3 op on `channels` channels it returns an nn.Module mapping (1, C, H, W) to the same shape."""
    name = type(operator).__name__
    protocol = "operator(channels, kernel_size, *, depthwise, act) -> nn.Module"
    if not callable(operator):
        raise ContractError(f"conf/operator: {name} is not callable ({protocol})")
    try:
        inspect.signature(operator).bind(channels, 3, depthwise=False, act=True)
    except TypeError as error:
        raise ContractError(f"conf/operator: {name} cannot be called as {protocol}: {error}") from None
    except ValueError:
        pass  # no introspectable signature: the probe below decides
    for depthwise in (False, True):
        op = operator(channels, 3, depthwise=depthwise, act=True)
        if not isinstance(op, nn.Module):
            raise ContractError(
                f"conf/operator: {name}({channels}, 3, depthwise={depthwise}) returned "
                f"{type(op).__name__}, expected an nn.Module ({protocol})"
            )
        with torch.no_grad():
            out = op.eval()(torch.zeros(1, channels, size, size))
        if not isinstance(out, torch.Tensor) or tuple(out.shape) != (1, channels, size, size):
            got = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
            raise ContractError(
                f"conf/operator: {name}({channels}, 3, depthwise={depthwise}) maps (1, {channels}, {size}, {size}) "
                f"to {got}; an operator keeps (B, C, H, W)"
            )


def check_head(head: Any, strides: Triple) -> None:
    """A built head is an nn.Module exposing `nc`, a `stride` per level and the `loss` it trains with."""
    check_module(head, "head")
    name = type(head).__name__
    for attribute in ("nc", "stride", "loss"):
        if not hasattr(head, attribute):
            raise ContractError(
                f"conf/head: {name} does not declare {attribute} (see lightyolo/models/heads/__init__.py)"
            )
    if not isinstance(head.loss, str) or "." not in head.loss:
        raise ContractError(f"conf/head: {name}.loss must be the dotted path of a loss class, got {head.loss!r}")
    declared = tuple(int(s) for s in torch.as_tensor(head.stride).tolist())
    if declared != tuple(strides):
        raise ContractError(f"conf/head: {name} has strides {declared} but the neck gives {tuple(strides)}")


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
